"""Kubeflow's real training-operator (built from its pinned module) runs PyTorchJobs on the test control plane."""

import json
import random
import sys
from pathlib import Path

import kubernetes
import pytest

from tests.cluster.controlplane import Cluster
from tests.cluster.ddp_logs import DDP_ENV, ddp_settings
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
# Each replica prints the rendezvous environment the operator gives it, as torchrun would read it, and the
# address MASTER_ADDR resolves to (retried, as torchrun's rendezvous does, until the master pod has one).
PRINT_ENV = """
import os, socket, time
deadline = time.monotonic() + 120
while True:
    try:
        address = socket.gethostbyname(os.environ["MASTER_ADDR"])
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(1)
keys = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
print("rank=%s world=%s master=%s:%s" % tuple(os.environ[k] for k in keys), "resolved=" + address)
"""


def replica(command: list[str]) -> dict:
    container = {"name": "pytorch", "image": "ignored-by-the-node-agent", "command": command}
    return {"replicas": 1, "restartPolicy": "Never", "template": {"spec": {"containers": [container]}}}


def pytorchjob(name: str, master: dict, worker: dict) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {"pytorchReplicaSpecs": {"Master": master, "Worker": worker}},
    }


def condition(job: dict, kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in job.get("status", {}).get("conditions") or [])


def test_two_replica_pytorchjob_runs_master_and_worker_and_succeeds(
    cluster: Cluster, node_agent: object, training_operator: object, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    core = kubernetes.client.CoreV1Api(cluster.api)
    command = ["python", "-c", PRINT_ENV]
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, pytorchjob("smoke", replica(command), replica(command))
    )

    def job() -> dict:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "smoke")

    def pods() -> dict[str, kubernetes.client.V1Pod]:
        listed = core.list_namespaced_pod(namespace, label_selector="training.kubeflow.org/job-name=smoke").items
        return {pod.metadata.name: pod for pod in listed}

    wait_until(lambda: condition(job(), "Succeeded"), "PyTorchJob smoke to succeed", timeout=300)
    assert not condition(job(), "Failed")
    by_name = wait_until(
        lambda: (found := pods()) and all(p.status.phase == "Succeeded" for p in found.values()) and found,
        "both replicas' pods to succeed",
        timeout=120,
    )
    assert sorted(by_name) == ["smoke-master-0", "smoke-worker-0"]
    master_ip = by_name["smoke-master-0"].status.pod_ip
    logs = {name: core.read_namespaced_pod_log(name, namespace).strip() for name in by_name}
    assert logs["smoke-master-0"] == f"rank=0 world=2 master=smoke-master-0:23456 resolved={master_ip}"
    # The worker found the master by name, through the node agent's stand-in for cluster DNS.
    assert logs["smoke-worker-0"] == f"rank=1 world=2 master=smoke-master-0:23456 resolved={master_ip}"
    # The operator's headless Service per replica (what cluster DNS resolves MASTER_ADDR through).
    services = core.list_namespaced_service(namespace, label_selector="training.kubeflow.org/job-name=smoke").items
    assert {s.metadata.name for s in services} >= {"smoke-master-0"}


def test_the_validating_webhook_refuses_two_masters(
    cluster: Cluster, training_operator: object, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    master = {**replica(["true"]), "replicas": 2}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, pytorchjob("two-masters", master, replica(["true"]))
        )
    assert refused.value.status == 403, refused.value.body  # Forbidden: how the API server reports a denial
    assert "validator.pytorchjob.training-operator.kubeflow.org" in refused.value.body
    assert "must be 1" in refused.value.body


TRAINER = Path(sys.executable).parent / "ktune-trainer"
TRAINER_ARGS = ["--model=tiny-bert", "--data=synthetic:queries=20,seed=1", "--max-length=32", "--epochs=1",
                "--device=cpu"]  # fmt: skip


def trainer_replica(port: int) -> dict:
    """One replica of `ktune-trainer train` (tiny-bert, gloo DDP on CPU) whose torch logs name its process group."""
    spec = replica([str(TRAINER), "train", *TRAINER_ARGS])
    spec["template"]["spec"]["containers"][0]["env"] = [
        {"name": "OMP_NUM_THREADS", "value": "1"},
        {"name": "KTUNE_METRICS_PORT", "value": str(port)},
        *DDP_ENV,
    ]
    return spec


def test_a_pytorchjob_of_the_real_trainer_trains_one_ddp_group_of_master_and_worker(
    cluster: Cluster, node_agent: object, training_operator: object, namespace: str
) -> None:
    """PyTorchJob's MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK alone (no torchrun) start the trainer's gloo group."""
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    core = kubernetes.client.CoreV1Api(cluster.api)
    port = random.randint(20000, 60000)  # the metrics port: test sessions side by side share the loopback
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, pytorchjob("ddp", trainer_replica(port), trainer_replica(port))
    )

    def job() -> dict:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ddp")

    wait_until(lambda: condition(job(), "Succeeded") or condition(job(), "Failed"), "PyTorchJob ddp to finish",
               timeout=300)  # fmt: skip
    names = ("ddp-master-0", "ddp-worker-0")
    logs = {name: core.read_namespaced_pod_log(name, namespace) for name in names}
    assert condition(job(), "Succeeded"), (job().get("status"), logs)
    # Each replica joined the same gloo group of two as its own rank, found through MASTER_ADDR.
    for rank, name in enumerate(names):
        settings = ddp_settings(logs[name])
        assert settings.get("rank") == str(rank), logs[name]
        assert (settings["world_size"], settings["backend_name"]) == ("2", "gloo")
        assert (settings["master_addr"], settings["master_port"]) == ("ddp-master-0", "23456")
        # The pod's own hostname resolves to its pod IP (the stand-in's UTS namespace and hosts file), so gloo
        # listens there rather than falling back to the machine's loopback.
        assert "Unable to resolve hostname" not in logs[name]
    assert "rank 0 of 2" in logs["ddp-master-0"]
    # Only rank 0 evaluates and writes the result (its termination message); the worker reports nothing.
    terminated = {
        name: core.read_namespaced_pod(name, namespace).status.container_statuses[0].state.terminated for name in names
    }
    assert json.loads(terminated["ddp-master-0"].message)["ndcg_at_10"] > 0
    assert not terminated["ddp-worker-0"].message
    assert "ndcg_at_10" not in logs["ddp-worker-0"]
