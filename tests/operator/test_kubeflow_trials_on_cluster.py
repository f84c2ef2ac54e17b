"""Trials that are Kubeflow training jobs (`spec.trial.resource`) on the real control plane, run by Kubeflow's real
training-operator v1.8.1 (the `training_operator` fixture, built from its Go module) through the node agent.

- PyTorchJob trials of the real trainer (`ktune-trainer train --model=tiny-bert`, gloo DDP on CPU): Master and
  Worker join one process group of world size 2 (each rank's DDP log says so), only the master serves metrics and
  writes the result, the job ends with the best params, and its hours count both pods.
- A pruned PyTorchJob trial (stand-in trainer) is deleted in the foreground: its worker pod, which ignores SIGTERM,
  stays Terminating for its grace period and keeps the PyTorchJob (finalizer `foregroundDeletion`) until it goes;
  then nothing of the trial is left.
- A PyTorchJob trial whose worker fails is Failed with the training-operator's reason; its retry is a new
  PyTorchJob, the failed one kept for its pods' logs.
- TFJob (Chief + Worker), XGBoostJob (Master + Worker) and MPIJob (Launcher + Worker) trials of the stand-in
  trainer each finish Succeeded from their primary pod's result. The non-primary replicas report another metric
  name (`side_score`), so a result or metrics read from the wrong pod would miss the objective.

What the test environment does not give and how the tests live with it:
- Pods share the machine's network namespace (each has its own loopback address): torch's TCPStore binds
  MASTER_PORT on the wildcard address, so two PyTorchJob masters of the real trainer at once would collide on
  23456. The real-trainer job runs its trials one at a time (parallelism 1); on a cluster each pod has its own.
- MPIJob: the node agent runs only a pod's first container (no init containers, no volumes), so the launcher's
  `kubectl-delivery` init container and the hostfile ConfigMap are not used, and there is no `mpirun`/sshd on
  this machine: the launcher runs the stand-in trainer itself and the workers run it too. What is tested is
  ktune's side (the MPIJob is created, its launcher is the primary pod, the job's Succeeded condition ends the
  trial), with the training-operator's real MPIJob controller; MPI's own launch is not.
"""

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.controlplane import Cluster, NodeAgentProcess
from tests.cluster.ddp_logs import DDP_ENV, ddp_settings
from tests.cluster.waiting import wait_until
from tests.operator.operator_harness import (
    KTUNE,
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
)
from tests.operator.trial_hours import assert_hours_match

pytestmark = pytest.mark.cluster

KUBEFLOW = "kubeflow.org/v1"
CPU_PER_POD = 0.25
TRAINER = str(KTUNE.parent / "ktune-trainer")
TRAINER_ARGS = ["--model=tiny-bert", "--data=synthetic:queries=20,seed=1", "--max-length=32", "--epochs=1",
                "--device=cpu", "--learning-rate=$(KTUNE_PARAM_LEARNING_RATE)"]  # fmt: skip
WORKER_GRACE = 15
# kind -> (plural, replica-spec key, the container the training-operator configures, primary replica type).
KINDS = {
    "PyTorchJob": ("pytorchjobs", "pytorchReplicaSpecs", "pytorch", "Master"),
    "TFJob": ("tfjobs", "tfReplicaSpecs", "tensorflow", "Chief"),
    "XGBoostJob": ("xgboostjobs", "xgbReplicaSpecs", "xgboost", "Master"),
    "MPIJob": ("mpijobs", "mpiReplicaSpecs", "mpi", "Launcher"),
}


def replica(container: dict[str, Any], grace: int | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [container]}
    if grace is not None:
        pod_spec["terminationGracePeriodSeconds"] = grace
    return {"replicas": 1, "restartPolicy": "Never", "template": {"spec": pod_spec}}


def kubeflow_job(name: str, namespace: str, kind: str, primary: dict[str, Any], worker: dict[str, Any],
                 worker_grace: int | None = None, **spec: Any) -> dict[str, Any]:
    """A TuningJob whose trials are `kind` jobs of a primary replica and one Worker (containers given)."""
    _, key, container_name, primary_type = KINDS[kind]
    job = stand_in_job(name, namespace, **spec)
    job["spec"]["trial"].pop("template")
    for container in (primary, worker):
        container.update(name=container_name, image="ktune/stand-in:test")  # the image is ignored by the node agent
        container.setdefault("resources", {"requests": {"cpu": str(CPU_PER_POD)}})
    job["spec"]["trial"]["resource"] = {"apiVersion": KUBEFLOW, "kind": kind, "spec": {
        key: {primary_type: replica(primary), "Worker": replica(worker, worker_grace)}}}  # fmt: skip
    return job


def stand_in(args: list[str]) -> dict[str, Any]:
    return {"command": [sys.executable, str(Path(__file__).parents[1] / "stand_in_trainer.py")], "args": args}


def pod_dirs(node: NodeAgentProcess, namespace: str) -> list[Path]:
    """Every pod of the namespace the node ran (its container.log and termination-log stay after deletion)."""
    return sorted((node.workdir / "pods").glob(f"{namespace}_*"))


def starts(launch_log: Path) -> list[str]:
    """The trial number of each stand-in process started (every replica of every trial logs its start)."""
    return sorted(line.split()[1] for line in launch_log.read_text().splitlines() if line.startswith("start "))


def test_pytorchjob_trials_of_the_real_trainer_run_one_ddp_group_each_and_the_job_keeps_the_masters_best(
    cluster: Cluster, node_agent: NodeAgentProcess, training_operator: object, namespace: str,
    operator: OperatorProcess,
) -> None:  # fmt: skip
    def trainer() -> dict[str, Any]:
        env = [{"name": "OMP_NUM_THREADS", "value": "1"}, *DDP_ENV]
        return {"command": [TRAINER, "train"], "args": list(TRAINER_ARGS), "env": env}

    job = kubeflow_job(
        "ddp", namespace, "PyTorchJob", trainer(), trainer(),
        parameters=[{"name": "learning_rate", "type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True}],
        budget={"maxTrials": 2, "parallelism": 1},  # one master at a time: see the module's docstring
    )  # fmt: skip
    job["spec"]["objective"] = {"metric": "ndcg_at_10", "direction": "maximize"}
    job["spec"]["metrics"] = ["mrr_at_10", "eval_loss"]
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "ddp", 420, operator)
    status = finished["status"]
    assert status["phase"] == "Succeeded", status
    trials = list(trials_of(cluster, namespace, "ddp").values())
    assert [t["status"]["state"] for t in trials] == ["Succeeded", "Succeeded"], [t["status"] for t in trials]
    assert all(t["status"]["attempts"] == 1 for t in trials)
    best = max(trials, key=lambda t: t["status"]["value"])
    assert status["bestTrial"]["params"] == best["spec"]["params"]
    assert 0.0 < status["bestTrial"]["value"] <= 1.0
    assert {"ndcg_at_10", "mrr_at_10", "eval_loss", "test_ndcg_at_10"} <= set(status["bestTrial"]["metrics"])

    # Each trial's PyTorchJob ran a master and a worker that formed one gloo group of two, ranks 0 and 1, found
    # through the master's name; only the master wrote a result, and each trial's value is its master's.
    groups: dict[str, dict[str, Path]] = {}
    for pod_dir in pod_dirs(node_agent, namespace):
        settings = ddp_settings((pod_dir / "container.log").read_text())
        assert (settings.get("world_size"), settings.get("backend_name")) == ("2", "gloo"), pod_dir
        groups.setdefault(settings["master_addr"], {})[settings["rank"]] = pod_dir
    assert len(groups) == 2 and all(sorted(ranks) == ["0", "1"] for ranks in groups.values()), groups
    for trial in trials:
        assert (trial["status"]["kind"], trial["status"]["pods"]) == ("PyTorchJob", 2), trial["status"]
        master = f"{trial['status']['resourceName']}-master-0"
        ranks = groups[master]
        assert ranks["0"].name.startswith(f"{namespace}_{master}_"), "rank 0 is the Master replica's pod"
        assert (ranks["1"] / "termination-log").read_text() == "", "the worker writes no result"
        result = json.loads((ranks["0"] / "termination-log").read_text())
        assert trial["status"]["value"] == pytest.approx(result["ndcg_at_10"], abs=1e-5)
    # Hours count both pods of each trial (times have 1 s precision).
    assert_hours_match(status["cpuHoursUsed"], trials, per_hour=2 * CPU_PER_POD)
    print(cluster.kubectl("get", "tuningjobs,trials,pytorchjobs", "-n", namespace).stdout)


def test_a_pruned_pytorchjob_trial_is_deleted_in_the_foreground_with_every_pod(
    cluster: Cluster, node_agent: NodeAgentProcess, training_operator: object, namespace: str,
    operator: OperatorProcess, tmp_path: Path,
) -> None:  # fmt: skip
    launches = tmp_path / "launches.log"
    master = stand_in(["--steps", "8", "--step-seconds", "0.6", "--launch-log", str(launches)])
    # The worker runs longer and ignores SIGTERM, so a deleted worker pod stays Terminating for its grace period:
    # a foreground deletion must keep the PyTorchJob (finalizer foregroundDeletion) that long; a background one
    # would remove it at once.
    worker = stand_in(["--steps", "60", "--step-seconds", "0.6", "--launch-log", str(launches),
                       "--metric", "side_score", "--ignore-sigterm"])  # fmt: skip
    # x = 1.5 scores below zero at every step: the threshold pruner stops that trial from the master's metrics.
    job = kubeflow_job(
        "pruned", namespace, "PyTorchJob", master, worker, worker_grace=WORKER_GRACE,
        parameters=[{"name": "x", "type": "categorical", "choices": [0.3, 1.5]}],
        sampler={"name": "grid", "seed": 1},
        pruner={"name": "threshold", "options": {"lower": 0.0, "n_warmup_steps": 1}},
        budget={"maxTrials": 2, "parallelism": 2},
    )  # fmt: skip
    apply(cluster, job)

    def trial_with(x: float, state: str) -> dict[str, Any] | None:
        trials = trials_of(cluster, namespace, "pruned").values()
        return next((t for t in trials if t["spec"]["params"]["x"] == x and t.get("status", {}).get("state") == state),
                    None)  # fmt: skip

    def pytorchjobs(number: int) -> list[dict[str, Any]]:
        selector = f"ktune.dev/tuningjob=pruned,ktune.dev/trial={number}"
        return get(cluster, "pytorchjobs", namespace, selector=selector)["items"]

    def pods_of(resource: str) -> list[dict[str, Any]]:
        return get(cluster, "pods", namespace, selector=f"training.kubeflow.org/job-name={resource}")["items"]

    pruned = wait_until(lambda: trial_with(1.5, "Pruned"), "the x = 1.5 trial to be pruned", timeout=180)
    assert pruned["status"]["reason"] == "PrunedByPruner", pruned["status"]
    assert (pruned["status"]["kind"], pruned["status"]["pods"]) == ("PyTorchJob", 2), pruned["status"]
    number = pruned["spec"]["number"]
    # Deleted in the foreground: the PyTorchJob stays while its Terminating worker pod does.
    deleting = wait_until(lambda: [j for j in pytorchjobs(number) if j["metadata"].get("deletionTimestamp")],
                          f"trial {number}'s PyTorchJob to be deleting", timeout=WORKER_GRACE)  # fmt: skip
    assert len(deleting) == 1 and "foregroundDeletion" in deleting[0]["metadata"]["finalizers"], deleting
    resource = deleting[0]["metadata"]["name"]
    assert resource == pruned["status"]["resourceName"]

    def worker_terminating() -> bool:
        return any(p["metadata"]["name"] == f"{resource}-worker-0" and p["metadata"].get("deletionTimestamp")
                   for p in pods_of(resource))

    # The garbage collector deletes the dependents once it sees the owner's deletion (a moment later): the worker
    # then stays Terminating (it ignores SIGTERM), and so does the PyTorchJob, held by its foreground finalizer.
    wait_until(worker_terminating, f"{resource}-worker-0 to be Terminating", timeout=WORKER_GRACE)
    assert pytorchjobs(number), f"{resource} went before its Terminating worker pod"
    wait_until(lambda: not pytorchjobs(number) and not pods_of(resource), f"{resource} and its pods to be gone",
               timeout=WORKER_GRACE + 60)  # fmt: skip

    # The other trial succeeds from the master's result (the worker reports side_score, not the objective).
    kept = wait_until(lambda: trial_with(0.3, "Succeeded"), "the x = 0.3 trial to succeed", timeout=180)
    assert kept["status"]["value"] == pytest.approx(1.0)
    finished = wait_finished(cluster, namespace, "pruned", 120, operator)
    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    assert starts(launches) == ["0", "0", "1", "1"], "each trial ran its master and its worker once"
    wait_until(lambda: not get(cluster, "pytorchjobs,pods", namespace)["items"], "every PyTorchJob and pod to be gone",
               timeout=WORKER_GRACE + 60)  # fmt: skip


def test_a_pytorchjob_trial_whose_worker_fails_fails_with_the_jobs_reason_and_is_retried_as_a_new_pytorchjob(
    cluster: Cluster, node_agent: NodeAgentProcess, training_operator: object, namespace: str,
    operator: OperatorProcess,
) -> None:  # fmt: skip
    # The worker exits 1 at once; the master would succeed later, but with restartPolicy Never one failed replica
    # fails the PyTorchJob first.
    job = kubeflow_job(
        "failing", namespace, "PyTorchJob", stand_in(["--steps", "10", "--step-seconds", "0.5"]),
        stand_in(["--steps", "1", "--step-seconds", "0.1", "--fail-above", "-1", "--metric", "side_score"]),
        retries=1, budget={"maxTrials": 1, "parallelism": 1},
    )  # fmt: skip
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "failing", 180, operator)
    trial = trials_of(cluster, namespace, "failing")[0]
    assert finished["status"]["phase"] == "Failed", finished["status"]
    assert (trial["status"]["state"], trial["status"]["attempts"]) == ("Failed", 2), trial["status"]
    # The training-operator's reason on the PyTorchJob's Failed condition.
    assert trial["status"]["reason"] == "PyTorchJobFailed", trial["status"]
    assert "Worker" in trial["status"]["message"], trial["status"]
    names = sorted(item["metadata"]["name"] for item in get(cluster, "pytorchjobs", namespace)["items"])
    assert names == ["failing-0-1", "failing-0-2"], "each attempt is a PyTorchJob of its own, kept for its pods' logs"
    wait_until(lambda: all(p["status"]["phase"] in ("Succeeded", "Failed")
                           for p in get(cluster, "pods", namespace)["items"]), "no pod of the job to run", timeout=60)


@pytest.mark.parametrize("kind", ["TFJob", "XGBoostJob", "MPIJob"])
def test_trials_of_another_kubeflow_kind_succeed_from_the_primary_pods_result(
    cluster: Cluster, node_agent: NodeAgentProcess, training_operator: object, namespace: str,
    operator: OperatorProcess, tmp_path: Path, kind: str,
) -> None:  # fmt: skip
    launches = tmp_path / "launches.log"
    steps = ["--steps", "3", "--step-seconds", "0.4", "--launch-log", str(launches)]
    name = kind.lower()
    job = kubeflow_job(
        name, namespace, kind, stand_in(steps), stand_in([*steps, "--metric", "side_score"]),
        parameters=[{"name": "x", "type": "categorical", "choices": [0.3, 0.8]}],
        sampler={"name": "grid", "seed": 1},
        budget={"maxTrials": 2, "parallelism": 2},
    )  # fmt: skip
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, name, 240, operator)
    status = finished["status"]
    assert status["phase"] == "Succeeded", (status, cluster.kubectl("get", KINDS[kind][0], "-n", namespace,
                                                                     "-o", "yaml").stdout)  # fmt: skip
    trials = {t["spec"]["params"]["x"]: t for t in trials_of(cluster, namespace, name).values()}
    assert {x: t["status"]["state"] for x, t in trials.items()} == {0.3: "Succeeded", 0.8: "Succeeded"}
    # The values are the primary replica's (score = 1 - (x - 0.3)^2); the Worker reported side_score only.
    assert trials[0.3]["status"]["value"] == pytest.approx(1.0)
    assert trials[0.8]["status"]["value"] == pytest.approx(0.75)
    assert {(t["status"]["kind"], t["status"]["pods"]) for t in trials.values()} == {(kind, 2)}
    assert status["bestTrial"]["params"] == {"x": 0.3}
    # Both replicas of each trial ran with the contract's variables (the stand-in reads its trial number there).
    assert starts(launches) == ["0", "0", "1", "1"]
    assert_hours_match(status["cpuHoursUsed"], list(trials.values()), per_hour=2 * CPU_PER_POD)
