"""Fixtures of the telemetry tests."""

from collections.abc import Iterator

import pytest

from tests.telemetry.fake_prometheus import FakePrometheus, serving


@pytest.fixture
def fake_prometheus() -> Iterator[FakePrometheus]:
    """A local server answering Prometheus queries as the test sets (`tests.telemetry.fake_prometheus`)."""
    with serving() as fake:
        yield fake
