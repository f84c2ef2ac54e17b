"""The admin's trial pod policy (setting forbidPrivilegedTrials) and the security defaults of trial pods,
without a cluster; tests/security/test_security_on_cluster.py shows both on the real API server."""

from pathlib import Path

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.operator.pod_policy import forbidden_fields, trial_forbidden_fields
from ktune.operator.pods import trial_pod_manifest
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from tests.chart.helm import render
from tests.operator.test_reconcile import NOW, Harness, job_body

CORPUS = Path(__file__).parents[1] / "fixtures" / "tuningjobs" / "valid"
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
    "nodeName": ({"nodeName": "control-plane-1", "containers": [{"name": "t", "command": ["train"]}]},
                 "spec.trial.template.spec.nodeName"),
    "capabilities.add": ({"containers": [{"name": "t", "command": ["train"], "securityContext": {
        "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}}}]},
        "spec.trial.template.spec.containers[0].securityContext.capabilities.add[1]"),
    "allowPrivilegeEscalation": ({"containers": [{"name": "t", "command": ["train"],
                                                  "securityContext": {"allowPrivilegeEscalation": True}}]},
                                 "spec.trial.template.spec.containers[0].securityContext.allowPrivilegeEscalation"),
    "root-pod": ({"securityContext": {"runAsUser": 0}, "containers": [{"name": "t", "command": ["train"]}]},
                 "spec.trial.template.spec.securityContext.runAsUser"),
    "root-sidecar": ({"containers": [{"name": "t", "command": ["train"]}], "initContainers": [
        {"name": "s", "command": ["x"], "restartPolicy": "Always", "securityContext": {"runAsUser": 0}}]},
        "spec.trial.template.spec.initContainers[0].securityContext.runAsUser"),
    "unconfined-pod": ({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                        "containers": [{"name": "t", "command": ["train"]}]},
                       "spec.trial.template.spec.securityContext.seccompProfile.type"),
    "unconfined-container": ({"containers": [{"name": "t", "command": ["train"],
                                              "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]},
                             "spec.trial.template.spec.containers[0].securityContext.seccompProfile.type"),
    "hostPort": ({"containers": [{"name": "t", "command": ["train"], "ports": [
        {"containerPort": 9100}, {"containerPort": 80, "hostPort": 80}]}]},
        "spec.trial.template.spec.containers[0].ports[1].hostPort"),
    "procMount": ({"containers": [{"name": "t", "command": ["train"], "securityContext": {"procMount": "Unmasked"}}]},
                  "spec.trial.template.spec.containers[0].securityContext.procMount"),
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


def test_what_pod_security_restricted_allows_passes_the_policy_including_adding_net_bind_service():
    restricted = {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False, "procMount": "Default",
                  "seccompProfile": {"type": "RuntimeDefault"},
                  "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    template = {"spec": {
        "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
        "initContainers": [{"name": "s", "command": ["x"], "restartPolicy": "Always", "securityContext": restricted,
                            "ports": [{"containerPort": 80, "hostPort": 0}]}],
        "containers": [{"name": "t", "command": ["train"], "securityContext": restricted,
                        "ports": [{"containerPort": 9100}]}]}}
    assert forbidden_fields(template) == []


def test_a_garbled_template_is_left_to_the_api_server_and_does_not_break_the_policy():
    garbled = {"spec": {"securityContext": "root", "nodeName": None, "volumes": "x", "initContainers": [
        "s", {"name": "s", "securityContext": {"capabilities": "ALL", "runAsUser": False}, "ports": ["80"]}]}}
    assert forbidden_fields(garbled) == []
    assert forbidden_fields({"spec": "nothing"}) == []


def test_every_pod_template_of_a_trial_resource_is_checked_and_named_by_its_path():
    """A Kubeflow job's Worker (not only the Master, the trial's `template`) and a Job's one template."""
    job = yaml.safe_load((CORPUS / "pytorchjob.yaml").read_text())
    worker = job["spec"]["trial"]["resource"]["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    worker["hostNetwork"] = True
    assert trial_forbidden_fields(load_tuningjob(job).spec.trial) == [
        "spec.trial.resource.spec.pytorchReplicaSpecs.Worker.template.spec.hostNetwork: forbidden by the operator's "
        "trial pod policy (setting forbidPrivilegedTrials); remove it"]
    job = yaml.safe_load((CORPUS / "indexed-job.yaml").read_text())
    job["spec"]["trial"]["resource"]["spec"]["template"]["spec"]["hostPID"] = True
    assert [problem.split(":")[0] for problem in trial_forbidden_fields(load_tuningjob(job).spec.trial)] == [
        "spec.trial.resource.spec.template.spec.hostPID"]


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


def test_trial_pods_default_to_non_root_read_only_no_escalation_no_capabilities_runtime_default_seccomp_and_no_token():
    pod = trial_pod_manifest({"spec": {"containers": [{"name": "t", "command": ["train"]}]}}, "job", 0, {"x": 1},
                             1, 9100, TRIAL)
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_what_the_template_sets_itself_wins_over_the_defaults():
    template = {"spec": {"securityContext": {"runAsNonRoot": False},
                         "containers": [{"name": "t", "command": ["train"],
                                         "securityContext": {"readOnlyRootFilesystem": False}}]}}
    pod = trial_pod_manifest(template, "job", 0, {"x": 1}, 1, 9100, TRIAL)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is False
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["spec"]["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is False and container["capabilities"] == {"drop": ["ALL"]}


def test_a_capability_the_template_adds_keeps_the_default_drop_all_while_its_own_drop_replaces_it():
    template = {"spec": {"containers": [
        {"name": "t", "command": ["train"], "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}},
        {"name": "u", "command": ["serve"], "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}]}}
    trainer, other = trial_pod_manifest(template, "job", 0, {"x": 1}, 1, 9100, TRIAL)["spec"]["containers"]
    assert trainer["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert other["securityContext"]["capabilities"] == {"drop": ["NET_RAW"]}
