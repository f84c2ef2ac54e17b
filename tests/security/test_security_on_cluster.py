"""Least privilege on the real API server: the trial pods ktune creates, the admin's trial pod policy, each
rule of the operator's ClusterRole (removing it breaks the operator), and a namespace-scoped install."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster import controllers
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    MANIFESTS,
    OPERATOR_NAMESPACE,
    OperatorProcess,
    apply,
    condition,
    get,
    stand_in_job,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster

CLUSTER_ROLE = next(doc for doc in yaml.safe_load_all((MANIFESTS / "operator.yaml").read_text())
                    if doc and doc["kind"] == "ClusterRole")
# Checked by the API server only where the OwnerReferencesPermissionEnforcement admission plugin is on (it is off
# on the test control plane, as on many clusters); there, setting blockOwnerDeletion needs it.
NEEDS_OWNER_REFERENCE_ENFORCEMENT = {"tuningjobs/finalizers", "trials/finalizers"}
CHECKED_RULES = [index for index, rule in enumerate(CLUSTER_ROLE["rules"])
                 if not set(rule["resources"]) <= NEEDS_OWNER_REFERENCE_ENFORCEMENT]


def account_with(cluster: Cluster, name: str, rules: list[dict], namespace: str | None = None) -> Path:
    """A ServiceAccount in ktune-system holding `rules` cluster-wide (or in `namespace` only); its kubeconfig."""
    binding_kind, role_kind = ("RoleBinding", "Role") if namespace else ("ClusterRoleBinding", "ClusterRole")
    scope = {"namespace": namespace} if namespace else {}
    documents = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": role_kind, "metadata": {"name": name, **scope},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": binding_kind, "metadata": {"name": name, **scope},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": OPERATOR_NAMESPACE}]},
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    return cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, name)


def test_the_trial_pod_on_the_server_carries_the_security_defaults_in_every_container_and_no_token(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    # The node agent runs only containers[0]: the init container and the native sidecar (SidecarContainers, on by
    # default since 1.29) are checked as the API server stored them, not run.
    job = stand_in_job("safe", namespace, budget={"maxTrials": 1, "parallelism": 1})
    job["spec"]["trial"]["template"]["spec"]["initContainers"] = [
        {"name": "fetch", "image": "ktune/fetch:test", "command": [sys.executable, "-c", "pass"]},
        {"name": "proxy", "image": "ktune/proxy:test", "command": [sys.executable, "-c", "pass"],
         "restartPolicy": "Always", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}},
    ]
    # Keep the succeeded pod: the test reads the Pod as the API server stored it.
    operator = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log",
                               extra_env={"KTUNE_OPERATOR_DELETE_SUCCEEDED_PODS": "false"}).start()
    try:
        apply(cluster, job)
        assert wait_finished(cluster, namespace, "safe", 90, operator)["status"]["phase"] == "Succeeded"
    finally:
        operator.stop()
    pod = get(cluster, "pod", namespace, "safe-0-1")
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    defaults = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    fetch, proxy = pod["spec"]["initContainers"]
    assert pod["spec"]["containers"][0]["securityContext"] == fetch["securityContext"] == defaults
    assert proxy["securityContext"] == {**defaults, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert proxy["restartPolicy"] == "Always"
    every = [fetch, proxy, *pod["spec"]["containers"]]
    assert all(c["volumeMounts"] == [{"name": "ktune-tmp", "mountPath": "/tmp"}] for c in every), every
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["volumes"] == [{"name": "ktune-tmp", "emptyDir": {}}]
    # Without the field the ServiceAccount admission plugin would have added the token volume (server dry run).
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "ktune/bare:test"}]}}
    admitted = json.loads(cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                                          input=json.dumps(bare)).stdout)
    assert any(v["name"].startswith("kube-api-access-") for v in admitted["spec"]["volumes"]), admitted["spec"]


def test_with_forbid_privileged_trials_a_job_asking_for_the_host_is_marked_invalid_and_runs_nothing(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    operator = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log",
                               extra_env={"KTUNE_OPERATOR_FORBID_PRIVILEGED_TRIALS": "true"}).start()
    try:
        job = stand_in_job("greedy", namespace, budget={"maxTrials": 1, "parallelism": 1})
        template = job["spec"]["trial"]["template"]["spec"]
        template.update({"hostNetwork": True, "hostPID": True, "nodeName": "some-node",
                         "securityContext": {"runAsUser": 0},
                         "volumes": [{"name": "root", "hostPath": {"path": "/"}}]})
        template["containers"][0]["securityContext"] = {"privileged": True, "procMount": "Unmasked",
                                                        "seccompProfile": {"type": "Unconfined"}}
        template["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]
        template["initContainers"] = [{"name": "proxy", "image": "ktune/proxy:test", "restartPolicy": "Always",
                                       "securityContext": {"allowPrivilegeEscalation": True,
                                                           "capabilities": {"add": ["SYS_ADMIN"]}}}]
        apply(cluster, job)

        def invalid() -> dict | None:
            found = condition(get(cluster, "tuningjob", namespace, "greedy"), "Invalid")
            return found if found and found["status"] == "True" else None

        message = wait_for(invalid, 60, "the privileged job to be marked Invalid", operator)["message"]
        for field in ("hostNetwork", "hostPID", "nodeName", "securityContext.runAsUser", "volumes[0].hostPath",
                      "containers[0].securityContext.privileged", "containers[0].securityContext.procMount",
                      "containers[0].securityContext.seccompProfile.type", "containers[0].ports[0].hostPort",
                      "initContainers[0].securityContext.allowPrivilegeEscalation",
                      "initContainers[0].securityContext.capabilities.add[0]"):
            assert f"spec.trial.template.spec.{field}: forbidden" in message, message
        assert get(cluster, "pods", namespace)["items"] == []
        apply(cluster, stand_in_job("modest", namespace, budget={"maxTrials": 1, "parallelism": 1}))
        assert wait_finished(cluster, namespace, "modest", 90, operator)["status"]["phase"] == "Succeeded"
    finally:
        operator.stop()


@pytest.fixture
def kubeflow_crds(cluster: Cluster) -> None:
    """Kubeflow's training job CRDs (without their controller): the operator's kubeflow.org rule is about them, and
    neither kopf's watch nor `kubectl auth can-i` asks about a kind the cluster does not serve."""
    controllers.apply(cluster, files=(controllers.TRAINING_OPERATOR.source_dir() / "manifests/base/crds")
                      .glob("kubeflow.org_*.yaml"))


@pytest.mark.parametrize("removed", CHECKED_RULES,
                         ids=lambda i: "+".join(CLUSTER_ROLE["rules"][i]["resources"]))
def test_the_operator_without_any_one_rule_of_its_cluster_role_is_forbidden_something_it_needs(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path, removed: int,
    kubeflow_crds: None,
):
    rules = [rule for index, rule in enumerate(CLUSTER_ROLE["rules"]) if index != removed]
    kubeconfig = account_with(cluster, f"ktune-minus-{removed}", rules)
    operator = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log").start()
    try:
        resources = CLUSTER_ROLE["rules"][removed]["resources"]
        job = stand_in_job("rbac", namespace, budget={"maxTrials": 1, "parallelism": 1})
        if "pods/log" in resources:  # needed only by jobs whose metrics come from their logs; reads them while it runs
            job["spec"]["metricsSource"] = {"type": "logs"}
            job["spec"]["trial"]["template"]["spec"]["containers"][0]["args"] = ["--steps", "2", "--step-seconds", "60"]
        if "jobs" in resources:  # needed only by jobs whose trials are batch/v1 Jobs (spec.trial.resource)
            job["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job",
                                                "spec": {"template": job["spec"]["trial"].pop("template")}}
        if "services" in resources:  # needed only by Indexed Job trials of several pods (their rank 0's name)
            job["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job", "spec": {
                "completionMode": "Indexed", "completions": 2, "parallelism": 2,
                "template": job["spec"]["trial"].pop("template")}}
        if "pytorchjobs" in resources:  # needed only by jobs whose trials are Kubeflow jobs
            template = job["spec"]["trial"].pop("template")
            template["spec"]["containers"][0]["name"] = "pytorch"
            job["spec"]["trial"]["resource"] = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {
                "pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": template}}}}
        apply(cluster, job)
        user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:ktune-minus-{removed}"
        # A rule may grant several resources; whichever of them the operator needs first is refused first.
        wait_for(lambda: any(f'forbidden: User "{user}"' in line and any(r.split("/")[0] in line for r in resources)
                             for line in operator.log().splitlines()),
                 90, f"a 403 on one of {resources}", operator)
        job = get(cluster, "tuningjob", namespace, "rbac")
        assert (job.get("status") or {}).get("phase") != "Succeeded"
    finally:
        operator.stop()


def test_a_namespace_scoped_install_can_act_in_its_namespace_and_nowhere_else(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, kubeflow_crds: None
):
    other = f"{namespace[:50]}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        kubeconfig = account_with(cluster, "ktune-scoped", CLUSTER_ROLE["rules"], namespace=namespace)
        checked = 0
        for rule in CLUSTER_ROLE["rules"]:
            group = rule["apiGroups"][0]
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    name, _, subresource = resource.partition("/")
                    target = f"{name}.{group}" if group else name
                    extra = [f"--subresource={subresource}"] if subresource else []
                    for ns, expected in ((namespace, "yes"), (other, "no")):
                        answer = cluster.kubectl("auth", "can-i", verb, target, *extra, "-n", ns,
                                                 f"--kubeconfig={kubeconfig}", check=False)
                        assert answer.stdout.strip() == expected, f"{verb} {target} in {ns}: {answer.stdout}"
                        checked += 1
        print(f"{checked} can-i checks: every verb of every rule, in both namespaces")
        refused = cluster.kubectl("get", "pods", "-n", other, f"--kubeconfig={kubeconfig}", check=False)
        assert refused.returncode != 0 and "forbidden" in refused.stderr
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false")


def test_with_leader_election_the_operator_without_its_lease_role_is_forbidden_the_lease(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    kubeconfig = account_with(cluster, "ktune-no-lease", CLUSTER_ROLE["rules"])
    operator = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log",
                               ("--leader-election", OPERATOR_NAMESPACE)).start()
    try:
        wait_for(lambda: "leases.coordination.k8s.io" in operator.log() and "forbidden" in operator.log(), 90,
                 "a 403 on the Lease", operator)
        assert "leading as" not in operator.log()
    finally:
        operator.stop()
