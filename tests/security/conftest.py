"""Fixtures of the security tests: the shipped CRDs and operator RBAC installed."""

from pathlib import Path

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import install_manifests


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, node_agent: object) -> Path:
    """The CRDs and RBAC applied; a kubeconfig with the operator ServiceAccount's token."""
    return install_manifests(cluster)
