"""Running the pinned helm (built by tests/cluster/build-testenv) on the chart, without a cluster."""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.controlplane import binary_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ktune"
NON_DEFAULT_VALUES = Path(__file__).resolve().parent / "values-non-default.yaml"
RELEASE = "ktune"
VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"


def cluster_capabilities() -> tuple[str, ...]:
    """`helm template` flags for the test cluster: its Kubernetes version (versions.env) and the admission policy's
    API, which it serves. Without them helm renders for Kubernetes v1.20, below the chart's kubeVersion."""
    pins = dict(line.split("=", 1) for line in (REPO / "tests" / "cluster" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    return ("--kube-version", pins["KUBERNETES_VERSION"], "--api-versions", VAP_API)


def helm_path() -> str:
    """The pinned helm; on an existing cluster (KTUNE_TEST_KUBECONFIG) the one on PATH."""
    if os.environ.get("KTUNE_TEST_KUBECONFIG"):
        found = shutil.which("helm")
        assert found, "KTUNE_TEST_KUBECONFIG is set but there is no helm on PATH"
        return found
    return str(binary_dir() / "helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run helm; `helm template` renders for the test cluster unless `args` name a --kube-version."""
    if args[:1] == ("template",) and "--kube-version" not in args:
        args = (*args, *cluster_capabilities())
    result = subprocess.run([helm_path(), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
    return result


def render(*args: str, namespace: str = "ktune-system") -> list[dict[str, Any]]:
    """`helm template` of the chart (hooks and tests included, CRDs not), as objects."""
    text = helm("template", RELEASE, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)
