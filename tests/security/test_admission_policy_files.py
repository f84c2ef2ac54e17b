"""The chart renders the ValidatingAdmissionPolicy of ktune.operator.permissions and its binding, and only when
enabled (manifests/admission/ holds the same, generated from the same source: tests/generated)."""

from ktune.operator.permissions import ADMISSION_POLICY_SPEC, ADMISSION_VALIDATION_ACTIONS
from tests.chart.helm import CHART, helm, render

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


def test_the_policy_checks_that_a_warm_start_sources_author_may_read_it_in_its_namespace():
    policy = next(obj for obj in render() if obj["kind"] == "ValidatingAdmissionPolicy")
    check = policy["spec"]["validations"][1]["expression"]
    assert "resource('tuningjobs').namespace(s['namespace']).check('get')" in check
    assert "resource('trials').namespace(s['namespace']).check('list')" in check
    assert "spec.warmStart.from" in policy["spec"]["validations"][1]["messageExpression"]


def test_cross_namespace_warm_start_without_the_policy_is_refused_at_install():
    failed = helm("template", "ktune", str(CHART), "--set", "settings.crossNamespaceWarmStart=true",
                  "--set", "admissionPolicy.enabled=false", check=False)
    assert failed.returncode != 0
    assert "settings.crossNamespaceWarmStart needs admissionPolicy.enabled" in failed.stderr
    assert [obj for obj in render("--set", "settings.crossNamespaceWarmStart=true") if obj["kind"] in KINDS]
