"""Every converted Katib example is accepted by the real API server (CRDs from manifests/, server dry run)."""

import io
import json
from pathlib import Path

import pytest
import yaml

from ktune.cli.katib import import_katib
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import install_manifests

pytestmark = pytest.mark.cluster

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.yaml"))


@pytest.fixture(scope="module")
def crds_installed(cluster: Cluster) -> Cluster:
    install_manifests(cluster)
    return cluster


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_converted_katib_example_passes_the_api_servers_dry_run(
    crds_installed: Cluster, namespace: str, path: Path
):
    out, err = io.StringIO(), io.StringIO()
    assert import_katib(str(path), out, err) == 0, err.getvalue()
    tuningjob = yaml.safe_load(out.getvalue())
    tuningjob["metadata"]["namespace"] = namespace  # Katib's examples live in kubeflow
    result = crds_installed.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(tuningjob),
                                    check=False)
    assert result.returncode == 0, result.stderr
    assert f"tuningjob.ktune.dev/{path.stem} created (server dry run)" in result.stdout
