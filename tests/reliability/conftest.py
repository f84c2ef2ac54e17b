"""Fixtures of the reliability tests: the shipped manifests installed, and an operator with short timeouts."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import OperatorProcess, install_manifests
from tests.reliability.fast_timeouts import FAST_TIMEOUTS


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, node_agent: object) -> Path:
    """The CRDs and RBAC applied; a kubeconfig with the operator ServiceAccount's token."""
    return install_manifests(cluster)


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """`ktune operator --namespace <the test's namespace>` as its ServiceAccount, with FAST_TIMEOUTS."""
    process = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log",
                              extra_env=FAST_TIMEOUTS).start()
    yield process
    process.stop()
