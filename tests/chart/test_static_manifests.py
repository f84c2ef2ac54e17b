"""manifests/ against the chart: the hand-kept Deployment and metrics Service of manifests/operator.yaml carry the
chart's defaults wherever they must agree (the image's user, probes, resources, security, the metrics Service),
and `kubectl apply -k manifests/` installs exactly the objects of manifests/crds.yaml and manifests/operator.yaml.

manifests/operator.yaml is not rendered from the chart because `scripts/generate` runs without helm (the pinned
helm is a test binary); this test is what keeps the two from drifting.
"""

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.chart.helm import REPO, one, render

MANIFESTS = REPO / "manifests"
MUST_MATCH = ("livenessProbe", "readinessProbe", "resources", "securityContext", "ports", "volumeMounts")


def documents(*names: str) -> list[dict[str, Any]]:
    return [doc for name in names for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


@pytest.fixture(scope="module")
def chart_pod() -> dict[str, Any]:
    return one(render(), "Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def static() -> list[dict[str, Any]]:
    return documents("operator.yaml")


def test_the_static_operator_container_matches_the_charts_on_probes_resources_security_and_ports(chart_pod, static):
    pod = one(static, "Deployment")["spec"]["template"]["spec"]
    chart_container, container = chart_pod["containers"][0], pod["containers"][0]
    assert {key: container.get(key) for key in MUST_MATCH} == {key: chart_container.get(key) for key in MUST_MATCH}
    for key in ("securityContext", "terminationGracePeriodSeconds", "volumes"):
        assert pod[key] == chart_pod[key], key


def test_both_run_as_the_operator_images_own_user(chart_pod, static):
    stage = re.search(r"^FROM \S+ AS operator$(.*?)(?=^FROM |\Z)", (REPO / "Dockerfile").read_text(), re.M | re.S)
    assert stage, "the Dockerfile has no operator stage"
    user, group = re.findall(r"^USER (\d+):(\d+)$", stage.group(1), re.M)[-1]
    for pod in (chart_pod, one(static, "Deployment")["spec"]["template"]["spec"]):
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(user), int(group))


def test_the_static_metrics_service_is_the_charts_and_selects_the_operator_pod(static):
    chart_service, service = one(render(), "Service"), one(static, "Service")
    assert service["metadata"]["name"].endswith("-metrics") and chart_service["metadata"]["name"].endswith("-metrics")
    assert (service["spec"]["type"], service["spec"]["ports"]) == (chart_service["spec"]["type"],
                                                                    chart_service["spec"]["ports"])
    pod_labels = one(static, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_kustomize_renders_exactly_the_objects_of_the_crds_and_the_operator_manifests():
    rendered = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
        return obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]

    expected = sorted(documents("crds.yaml", "operator.yaml"), key=key)
    assert sorted((doc for doc in yaml.safe_load_all(rendered) if doc), key=key) == expected
