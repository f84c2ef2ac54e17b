"""`ktune logs JOB TRIAL` and `kubectl apply -k manifests/` on the real control plane.

The logs come through kube-apiserver's `pods/log` from the node agent's kubelet log endpoint
(tests/cluster/kubelet_logs.py), as they would from a kubelet: a pod trial's log, an Indexed Job trial's metrics
pod (index 0) and a PyTorchJob trial's (the Master, under the real training-operator) by default, each pod of a
trial with --all, and the refusals that name what to do.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    KTUNE,
    MANIFESTS,
    STAND_IN,
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    wait_finished,
)

pytestmark = pytest.mark.cluster

# Each pod says which completion index it is before the stand-in trainer runs.
SAY_INDEX = ["sh", "-c", 'echo "index=${JOB_COMPLETION_INDEX:-none}"; exec "$@"', "sh", sys.executable, str(STAND_IN)]
# Each replica of a PyTorchJob says its rank (the training-operator sets RANK: 0 for the Master).
SAY_RANK = ["sh", "-c", 'echo "rank=${RANK:-none}"; exec "$@"', "sh", sys.executable, str(STAND_IN)]


@pytest.fixture
def keeping_operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path):
    """The operator, keeping succeeded trials' pods (their logs go with them otherwise)."""
    process = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log",
                              extra_env={"KTUNE_OPERATOR_DELETE_SUCCEEDED_PODS": "false"}).start()
    yield process
    process.stop()


def ktune_logs(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KTUNE), "logs", *args], capture_output=True, text=True, timeout=60, check=False,
                          env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"})


def kubectl_logs(cluster: Cluster, namespace: str, pod: str) -> str:
    return cluster.kubectl("logs", pod, "-n", namespace, "-c", "trainer").stdout


def test_ktune_logs_prints_a_pod_trials_log_and_a_job_trials_metrics_pod_or_every_pod(
    cluster: Cluster, namespace: str, keeping_operator: OperatorProcess
):
    single = stand_in_job("single", namespace, budget={"maxTrials": 1, "parallelism": 1})
    single["spec"]["trial"]["template"]["spec"]["containers"][0]["command"] = SAY_INDEX
    indexed = stand_in_job("indexed", namespace, budget={"maxTrials": 1, "parallelism": 1})
    template = indexed["spec"]["trial"].pop("template")
    template["spec"]["containers"][0]["command"] = SAY_INDEX
    indexed["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job", "spec": {
        "completionMode": "Indexed", "completions": 2, "parallelism": 2, "template": template}}
    apply(cluster, single)
    apply(cluster, indexed)
    for name in ("single", "indexed"):
        assert wait_finished(cluster, namespace, name, 180, keeping_operator)["status"]["phase"] == "Succeeded"

    printed = ktune_logs(cluster, "single", "0", "-n", namespace)
    assert printed.returncode == 0, printed.stderr
    single_pod = get(cluster, "trial", namespace, "single-0")["status"]["podName"]
    assert printed.stdout == kubectl_logs(cluster, namespace, single_pod)
    assert printed.stdout.startswith("index=none\nstand-in trial 0 attempt "), printed.stdout
    assert ktune_logs(cluster, "single", "single-0", "-n", namespace, "--tail", "1").stdout == \
        printed.stdout.splitlines(keepends=True)[-1]

    pods = sorted(item["metadata"]["name"] for item in
                  get(cluster, "pods", namespace, selector="ktune.dev/tuningjob=indexed")["items"])
    assert len(pods) == 2
    by_index = {kubectl_logs(cluster, namespace, pod).splitlines()[0]: pod for pod in pods}
    assert sorted(by_index) == ["index=0", "index=1"]
    metrics_pod = ktune_logs(cluster, "indexed", "0", "-n", namespace)
    assert metrics_pod.returncode == 0, metrics_pod.stderr
    assert metrics_pod.stdout == kubectl_logs(cluster, namespace, by_index["index=0"])
    every = ktune_logs(cluster, "indexed", "0", "-n", namespace, "--all")
    assert every.returncode == 0, every.stderr
    expected = "".join(f"==> pod/{pod} <==\n{kubectl_logs(cluster, namespace, pod)}" for pod in
                       sorted(pods, key=lambda pod: (get(cluster, "pod", namespace, pod)["metadata"]
                                                     ["creationTimestamp"], pod)))
    assert every.stdout == expected

    missing = ktune_logs(cluster, "single", "7", "-n", namespace)
    assert missing.returncode == 1
    assert f"Trial {namespace}/single-7 not found (ktune status single -n {namespace} lists the trials)" in \
        missing.stderr
    no_such_container = ktune_logs(cluster, "single", "0", "-n", namespace, "-c", "sidecar")
    assert no_such_container.returncode == 1
    assert f"cannot read the log of pod {namespace}/{single_pod}: " in no_such_container.stderr
    cluster.kubectl("delete", "pod", single_pod, "-n", namespace, "--wait=true")
    gone = ktune_logs(cluster, "single", "0", "-n", namespace)
    assert gone.returncode == 1 and "has no pod now" in gone.stderr and "DELETE_SUCCEEDED_PODS" in gone.stderr


def test_ktune_logs_prints_a_pytorchjob_trials_master_by_default_and_both_replicas_with_all(
    cluster: Cluster, training_operator: object, namespace: str, keeping_operator: OperatorProcess
):
    job = stand_in_job("ddp", namespace, budget={"maxTrials": 1, "parallelism": 1})
    template = job["spec"]["trial"].pop("template")
    container = {**template["spec"]["containers"][0], "name": "pytorch", "command": SAY_RANK}

    def replica() -> dict:
        return {"replicas": 1, "restartPolicy": "Never", "template": {"spec": {"containers": [dict(container)]}}}

    job["spec"]["trial"]["resource"] = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {
        "pytorchReplicaSpecs": {"Master": replica(), "Worker": replica()}}}
    apply(cluster, job)
    assert wait_finished(cluster, namespace, "ddp", 240, keeping_operator)["status"]["phase"] == "Succeeded"

    pods = get(cluster, "pods", namespace, selector="ktune.dev/tuningjob=ddp")["items"]
    logs = {pod["metadata"]["labels"]["training.kubeflow.org/replica-type"]:
            cluster.kubectl("logs", pod["metadata"]["name"], "-n", namespace, "-c", "pytorch").stdout for pod in pods}
    assert sorted(logs) == ["master", "worker"] and logs["master"].startswith("rank=0\n"), logs
    master = ktune_logs(cluster, "ddp", "0", "-n", namespace)
    assert master.returncode == 0, master.stderr
    assert master.stdout == logs["master"]
    every = ktune_logs(cluster, "ddp", "0", "-n", namespace, "--all").stdout
    assert sorted(every.split("==> pod/")[1:]) == sorted(
        f"{pod['metadata']['name']} <==\n{logs[pod['metadata']['labels']['training.kubeflow.org/replica-type']]}"
        for pod in pods)


def test_kubectl_apply_k_manifests_is_accepted_by_the_api_server(cluster: Cluster, operator_kubeconfig: Path):
    result = cluster.kubectl("apply", "-k", str(MANIFESTS), "--dry-run=server")
    applied = {line.split()[0] for line in result.stdout.splitlines()}
    assert {"namespace/ktune-system", "deployment.apps/ktune-operator", "service/ktune-operator-metrics",
            "customresourcedefinition.apiextensions.k8s.io/tuningjobs.ktune.dev"} <= applied, result.stdout
