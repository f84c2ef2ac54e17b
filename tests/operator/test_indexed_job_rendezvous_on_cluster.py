"""examples/distributed.yaml on the real control plane: each trial an Indexed Job of 2 pods of the real trainer
(tiny-bert, gloo DDP), whose ranks meet through what the operator gives them and what a cluster provides: the
Job controller's pod hostnames, a headless Service per attempt (resolved by the node agent's stand-in for cluster
DNS, tests/cluster/pod_dns.py) and torchrun's variables."""

import random
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import Cluster
from tests.cluster.ddp_logs import DDP_ENV, ddp_settings
from tests.cluster.waiting import wait_until
from tests.operator.operator_harness import ROOT, OperatorProcess, apply, get, trials_of, wait_finished, wait_for

pytestmark = pytest.mark.cluster

TRAINER = Path(sys.executable).parent / "ktune-trainer"
TRAINER_ARGS = ["--model=tiny-bert", "--data=synthetic:queries=20,seed=1", "--max-length=32", "--epochs=1",
                "--learning-rate=$(KTUNE_PARAM_LEARNING_RATE)", "--device=cpu"]


def distributed_example(namespace: str, master_port: int, metrics_port: int) -> dict[str, Any]:
    """examples/distributed.yaml as written (2 pods per trial, 1 GPU each), but for this machine: the venv's
    trainer on less data, one trial at a time, and ports of its own (the node agent's pods share the machine's
    network, where a cluster gives each pod its own)."""
    job = yaml.safe_load((ROOT / "examples" / "distributed.yaml").read_text())
    job["metadata"]["namespace"] = namespace
    job["spec"]["budget"] = {"maxTrials": 2, "parallelism": 1}
    job["spec"]["trial"]["metricsPort"] = metrics_port
    container = job["spec"]["trial"]["resource"]["spec"]["template"]["spec"]["containers"][0]
    container.update(command=[str(TRAINER), "train"], args=TRAINER_ARGS)
    # A MASTER_PORT the template sets is kept; the operator's default (29500) is torchrun's, which anything else
    # running torchrun on this machine may hold.
    container["env"] += [{"name": "MASTER_PORT", "value": str(master_port)}, *DDP_ENV]
    return job


def test_the_distributed_example_trains_each_trial_as_one_ddp_group_of_its_two_pods_found_by_name(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    master_port, metrics_port = random.sample(range(20000, 60000), 2)
    # Succeeded Jobs kept: their pods' logs are read afterwards, and the test deletes a Job itself.
    operator = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log",
                               extra_env={"KTUNE_OPERATOR_DELETE_SUCCEEDED_PODS": "false"}).start()
    try:
        apply(cluster, distributed_example(namespace, master_port, metrics_port))

        def first_service() -> dict[str, Any] | None:
            services = get(cluster, "services", namespace)["items"]
            return next((s for s in services if s["metadata"]["name"] == "distributed-0-1"), None)

        # While trial 0 runs: its Job's headless Service, selecting the Job's pods, owned by the Job.
        service = wait_for(first_service, 120, "trial 0's rendezvous Service", operator)
        trial_job = get(cluster, "job", namespace, "distributed-0-1")
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "distributed-0-1"}
        assert [(ref["kind"], ref["uid"]) for ref in service["metadata"]["ownerReferences"]] == \
            [("Job", trial_job["metadata"]["uid"])]
        assert trial_job["spec"]["template"]["spec"]["subdomain"] == "distributed-0-1"

        finished = wait_finished(cluster, namespace, "distributed", 420, operator)
        trials = trials_of(cluster, namespace, "distributed")
        assert finished["status"]["phase"] == "Succeeded", (finished["status"], trials)
        assert sorted(trials) == [0, 1]
        assert all(t["status"]["state"] == "Succeeded" and t["status"]["value"] > 0 for t in trials.values()), trials

        for number in trials:
            name = f"distributed-{number}-1"
            pods = get(cluster, "pods", namespace, selector=f"batch.kubernetes.io/job-name={name}")["items"]
            by_rank = {pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: pod for pod in pods}
            assert sorted(by_rank) == ["0", "1"], [pod["metadata"]["name"] for pod in pods]
            # Both ranks joined one gloo group of two, meeting at index 0's name under the Job's Service.
            for rank, pod in by_rank.items():
                log = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
                settings = ddp_settings(log)
                assert settings.get("rank") == rank, log[-3000:]
                assert (settings["world_size"], settings["backend_name"]) == ("2", "gloo")
                assert (settings["master_addr"], settings["master_port"]) == (f"{name}-0.{name}", str(master_port))
                assert pod["spec"]["hostname"] == f"{name}-{rank}" and pod["spec"]["subdomain"] == name

        # The Service goes with its Job (the garbage collector, through its ownerReference).
        cluster.kubectl("delete", "job", "-n", namespace, "distributed-0-1", "--cascade=foreground", "--wait=false")
        wait_until(lambda: first_service() is None, "trial 0's Service to be deleted with its Job", timeout=60)
        assert any(s["metadata"]["name"] == "distributed-1-1" for s in get(cluster, "services", namespace)["items"])
    finally:
        operator.stop()
