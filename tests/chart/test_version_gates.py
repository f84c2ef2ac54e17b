"""The chart's version gates: it installs on Kubernetes 1.29 and later (Chart.yaml kubeVersion), and renders its
admission policy only where the cluster serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (1.30+),
saying in NOTES.txt when it was left out. Rendered by the pinned helm with --kube-version and --api-versions, as
`helm install` renders from a real cluster's discovery."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CHART, REPO, VAP_API, helm, kinds, render

POLICY_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
KUBE_1_29 = ("--kube-version", "1.29.4")  # helm's own API list has no ValidatingAdmissionPolicy: as on 1.29
KUBE_1_30 = ("--kube-version", "1.30.0", "--api-versions", VAP_API)


def test_the_chart_states_its_minimum_and_the_readme_the_same() -> None:
    kube_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    assert kube_version == ">=1.29.0-0"
    readme = (REPO / "README.md").read_text()
    assert re.findall(r"Kubernetes (1\.\d+) or later", readme) == ["1.29"]


@pytest.mark.parametrize("version", ["1.28.9", "1.20.0"])
def test_below_the_minimum_helm_refuses_the_chart(version: str) -> None:
    result = helm("template", "ktune", str(CHART), "--kube-version", version, check=False)
    assert result.returncode != 0
    assert f"chart requires kubeVersion: >=1.29.0-0 which is incompatible with Kubernetes v{version}" in result.stderr


def test_on_1_29_the_chart_installs_without_the_admission_policy(tmp_path: Path) -> None:
    objects = render(*KUBE_1_29)
    assert not POLICY_KINDS & set(kinds(objects))
    assert "Deployment" in kinds(objects)
    told = notes(tmp_path, *KUBE_1_29)
    assert "The admission policy (admissionPolicy.enabled) was LEFT OUT: this cluster (Kubernetes v1.29.4)" in told


def test_where_the_policy_api_is_served_the_policy_and_its_binding_are_rendered(tmp_path: Path) -> None:
    assert set(kinds(render(*KUBE_1_30))) >= POLICY_KINDS
    assert "LEFT OUT" not in notes(tmp_path, *KUBE_1_30)


def test_a_disabled_policy_is_not_reported_as_left_out(tmp_path: Path) -> None:
    assert "LEFT OUT" not in notes(tmp_path, *KUBE_1_29, "--set", "admissionPolicy.enabled=false")


def test_cross_namespace_warm_start_is_refused_where_the_policy_cannot_be_installed() -> None:
    result = helm("template", "ktune", str(CHART), *KUBE_1_29, "--set", "settings.crossNamespaceWarmStart=true",
                  check=False)
    assert result.returncode != 0
    assert f"settings.crossNamespaceWarmStart needs the admission policy, and this cluster does not serve {VAP_API}" \
        in result.stderr


def notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` would print it: helm template skips NOTES.txt, so a copy of the chart renders
    it into a YAML document through `tpl`, with the same values and capabilities."""
    copy = tmp_path / "ktune"
    shutil.copytree(CHART, copy)
    shutil.copy(CHART / "templates" / "NOTES.txt", copy / "notes-source.txt")
    (copy / "templates" / "notes.yaml").write_text('notes: {{ tpl (.Files.Get "notes-source.txt") . | toJson }}\n')
    text = helm("template", "ktune", str(copy), "--show-only", "templates/notes.yaml", *args).stdout
    return yaml.safe_load(text)["notes"]
