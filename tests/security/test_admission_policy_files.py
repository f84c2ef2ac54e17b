"""The chart ships the same ValidatingAdmissionPolicy as manifests/admission/, and only when enabled."""

from pathlib import Path

import yaml

from tests.chart.helm import render

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "admission" / "tuningjob-author-may-create-pods.yaml"
KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def test_the_chart_renders_the_manifests_policy_and_binding_by_default():
    shipped = {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}
    rendered = {obj["kind"]: obj for obj in render() if obj["kind"] in KINDS}
    assert set(rendered) == set(KINDS)
    policy_name = rendered["ValidatingAdmissionPolicy"]["metadata"]["name"]
    assert rendered["ValidatingAdmissionPolicy"]["spec"] == shipped["ValidatingAdmissionPolicy"]["spec"]
    assert rendered["ValidatingAdmissionPolicyBinding"]["spec"] == {"policyName": policy_name,
                                                                    "validationActions": ["Deny"]}
    assert "check('create').allowed()" in shipped["ValidatingAdmissionPolicy"]["spec"]["validations"][0]["expression"]


def test_admins_can_leave_the_policy_out():
    assert not [obj for obj in render("--set", "admissionPolicy.enabled=false") if obj["kind"] in KINDS]
