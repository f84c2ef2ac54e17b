"""The admin's trial pod policy (setting forbidPrivilegedTrials) and the security defaults of trial pods,
without a cluster; tests/security/test_security_on_cluster.py shows both on the real API server."""

import pytest

from ktune.operator.pod_policy import forbidden_fields
from ktune.operator.pods import trial_pod_manifest
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from tests.chart.helm import render
from tests.operator.test_reconcile import NOW, Harness, job_body

TRIAL = {"apiVersion": "ktune.dev/v1alpha1", "kind": "Trial", "metadata": {"name": "job-0", "uid": "u"}}
ESCAPES = {
    "privileged": ({"containers": [{"name": "t", "command": ["train"], "securityContext": {"privileged": True}}]},
                   "spec.trial.template.spec.containers[0].securityContext.privileged"),
    "privileged-init": ({"containers": [{"name": "t", "command": ["train"]}],
                         "initContainers": [{"name": "i", "command": ["x"], "securityContext": {"privileged": True}}]},
                        "spec.trial.template.spec.initContainers[0].securityContext.privileged"),
    "hostPath": ({"containers": [{"name": "t", "command": ["train"]}],
                  "volumes": [{"name": "data", "emptyDir": {}}, {"name": "root", "hostPath": {"path": "/"}}]},
                 "spec.trial.template.spec.volumes[1].hostPath"),
    "hostNetwork": ({"hostNetwork": True, "containers": [{"name": "t", "command": ["train"]}]},
                    "spec.trial.template.spec.hostNetwork"),
    "hostPID": ({"hostPID": True, "containers": [{"name": "t", "command": ["train"]}]},
                "spec.trial.template.spec.hostPID"),
    "hostIPC": ({"hostIPC": True, "containers": [{"name": "t", "command": ["train"]}]},
                "spec.trial.template.spec.hostIPC"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_each_way_out_of_the_container_is_named_by_the_policy(case: str):
    template, field = ESCAPES[case]
    problems = forbidden_fields({"spec": template})
    assert len(problems) == 1 and problems[0].startswith(f"{field}: forbidden"), problems


def test_an_ordinary_template_passes_the_policy():
    template = {"spec": {"containers": [{"name": "t", "command": ["train"], "securityContext": {"privileged": False}}],
                         "hostNetwork": False, "volumes": [{"name": "scratch", "emptyDir": {}}]}}
    assert forbidden_fields(template) == []


@pytest.mark.parametrize("forbid", [True, False])
def test_with_the_setting_a_privileged_job_is_marked_invalid_and_starts_nothing(forbid: bool):
    body = job_body(max_trials=1, parallelism=1)
    body["spec"]["trial"]["template"]["spec"]["hostPID"] = True
    harness = Harness(body)
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(forbid_privileged_trials=forbid))
    status = harness.tick(NOW)
    invalid = next(c for c in status["conditions"] if c["type"] == "Invalid")
    if forbid:
        assert (status["phase"], invalid["status"]) == ("Failed", "True")
        assert "spec.trial.template.spec.hostPID: forbidden" in invalid["message"]
        assert harness.cluster.trials == {} and harness.cluster.pods == {}
    else:
        assert invalid["status"] == "False" and sorted(harness.cluster.pods) == ["job-0-1"]


def test_the_setting_reads_true_and_false_from_the_environment_and_names_a_bad_value():
    assert OperatorSettings.from_env({"KTUNE_OPERATOR_FORBID_PRIVILEGED_TRIALS": "True"}).forbid_privileged_trials
    assert not OperatorSettings.from_env({"KTUNE_OPERATOR_FORBID_PRIVILEGED_TRIALS": "false"}).forbid_privileged_trials
    with pytest.raises(ValueError, match="KTUNE_OPERATOR_FORBID_PRIVILEGED_TRIALS='yes' must be true or false"):
        OperatorSettings.from_env({"KTUNE_OPERATOR_FORBID_PRIVILEGED_TRIALS": "yes"})


def test_the_chart_value_reaches_the_operator_as_the_setting():
    objects = render("--set", "settings.forbidPrivilegedTrials=true")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert OperatorSettings.from_env(env).forbid_privileged_trials


def test_trial_pods_default_to_non_root_read_only_no_escalation_no_capabilities_and_runtime_default_seccomp():
    pod = trial_pod_manifest({"spec": {"containers": [{"name": "t", "command": ["train"]}]}}, "job", 0, {"x": 1},
                             1, 9100, TRIAL)
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def test_what_the_template_sets_itself_wins_over_the_defaults():
    template = {"spec": {"securityContext": {"runAsNonRoot": False},
                         "containers": [{"name": "t", "command": ["train"],
                                         "securityContext": {"readOnlyRootFilesystem": False}}]}}
    pod = trial_pod_manifest(template, "job", 0, {"x": 1}, 1, 9100, TRIAL)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is False
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["spec"]["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is False and container["capabilities"] == {"drop": ["ALL"]}
