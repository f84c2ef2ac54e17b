"""`metricsSource: {type: logs}`: its fields, defaults and the problems named by field."""

from __future__ import annotations

from typing import Any

import pytest

from ktune.algorithms import load_tuningjob
from ktune.contract import KATIB_DEFAULT_FILTER
from ktune.spec import SpecError
from tests.spec.test_spec import minimal


def with_source(source: dict[str, Any]) -> dict[str, Any]:
    raw = minimal()
    raw["spec"]["metricsSource"] = source
    return raw


def problems(source: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_tuningjob(with_source(source))
    return caught.value.problems


def test_a_log_source_defaults_to_both_formats_katibs_filter_and_the_step_named_step() -> None:
    job = load_tuningjob(with_source({"type": "logs"}))
    source = job.spec.metrics_source
    assert (source.type, source.format, source.filter, source.step_metric) == ("logs", None, None, "step")
    assert job.manifest["spec"]["metricsSource"] == {"type": "logs", "stepMetric": "step"}


def test_a_log_source_keeps_what_it_was_given() -> None:
    given = {"type": "logs", "format": "katib", "filter": KATIB_DEFAULT_FILTER, "stepMetric": "epoch"}
    job = load_tuningjob(with_source(given))
    assert job.manifest["spec"]["metricsSource"] == given
    assert (job.spec.metrics_source.filter, job.spec.metrics_source.step_metric) == (KATIB_DEFAULT_FILTER, "epoch")


@pytest.mark.parametrize(("source", "expected"), [
    ({"type": "logs", "format": "xml"}, "spec.metricsSource.format: must be one of katib, json"),
    ({"type": "logs", "filter": "(unclosed"}, "spec.metricsSource.filter: is not a valid regular expression"),
    ({"type": "logs", "filter": r"(\w+)=\S+"}, "spec.metricsSource.filter: must have two groups, the metric's name "
                                                "then its value"),
    ({"type": "logs", "format": "json", "filter": KATIB_DEFAULT_FILTER},
     "spec.metricsSource.filter: only applies to format katib"),
    ({"type": "logs", "stepMetric": "my step"}, "spec.metricsSource.stepMetric: must be the name of the step"),
    ({"type": "direct", "stepMetric": "epoch"}, "spec.metricsSource.stepMetric: only for type logs (this source is "
                                                 "type direct): remove it, or set type: logs"),
    ({"type": "logs", "url": "http://prometheus:9090"}, "spec.metricsSource.url: only for type prometheus"),
    ({"type": "prometheus", "url": "http://p:9090", "format": "json"}, "spec.metricsSource.format: only for type "
                                                                        "logs"),
])
def test_each_wrong_field_is_named_with_its_fix(source: dict[str, Any], expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems(source)), problems(source)
