"""Fixtures of the operator's cluster tests: the installed manifests and a running operator."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import OperatorProcess, install_manifests


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, node_agent: object) -> Path:
    """The CRDs and RBAC applied; a kubeconfig with the operator ServiceAccount's token."""
    return install_manifests(cluster)


@pytest.fixture
def operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """`ktune operator --namespace <the test's namespace>` running as that ServiceAccount."""
    process = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log").start()
    yield process
    process.stop()
