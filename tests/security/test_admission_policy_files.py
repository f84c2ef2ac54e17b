"""The chart renders the ValidatingAdmissionPolicy of ktune.operator.permissions and its binding, and only when
enabled (manifests/admission/ holds the same, generated from the same source: tests/generated)."""

from ktune.operator.permissions import ADMISSION_POLICY_SPEC, ADMISSION_VALIDATION_ACTIONS
from tests.chart.helm import render

KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def test_the_chart_renders_the_policy_and_its_binding_by_default():
    rendered = {obj["kind"]: obj for obj in render() if obj["kind"] in KINDS}
    assert set(rendered) == set(KINDS)
    policy = rendered["ValidatingAdmissionPolicy"]
    assert policy["spec"] == ADMISSION_POLICY_SPEC
    assert rendered["ValidatingAdmissionPolicyBinding"]["spec"] == {
        "policyName": policy["metadata"]["name"], "validationActions": ADMISSION_VALIDATION_ACTIONS}
    assert "check('create').allowed()" in policy["spec"]["validations"][0]["expression"]


def test_admins_can_leave_the_policy_out():
    assert not [obj for obj in render("--set", "admissionPolicy.enabled=false") if obj["kind"] in KINDS]
