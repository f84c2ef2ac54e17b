"""Trials queued in Kueue (`spec.trial.queueName`) on the real control plane with Kueue's real controller: a
ClusterQueue with quota for 2 GPUs admits the 1-GPU Job trials of a job with parallelism 4 two at a time; the
others wait Pending (reason QueueAdmission) without being timed out or counting hours, and all succeed. The same
with PyTorchJob trials (Master + Worker, 1 GPU each, suspended through `spec.runPolicy.suspend`) run by the real
training-operator: one trial at a time. A trial Kueue preempts for a Job of higher priority goes back to Pending
and, re-admitted, runs again within the same attempt."""

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    STAND_IN,
    OperatorProcess,
    apply,
    stand_in_job,
    trials_of,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster

KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
GPU_QUOTA = 2
TRIALS = 4
SERIALIZE = kubernetes.client.ApiClient()
STEPS, STEP_SECONDS = 6, 1.0  # a trial runs 6 s or more: the queued ones wait at least that long


def kueue_object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


@contextlib.contextmanager
def gpu_queue(cluster: Cluster, namespace: str, gpus: int, **cluster_queue_spec: Any) -> Iterator[str]:
    """A LocalQueue `gpu-trials` in `namespace` whose ClusterQueue has quota for `gpus` GPUs."""
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    flavor, cluster_queue = f"{namespace}-flavor", f"{namespace}-gpus"
    custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "resourceflavors",
                                        kueue_object("ResourceFlavor", flavor, {}))
    quota = {"name": "nvidia.com/gpu", "nominalQuota": gpus}
    custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", kueue_object(
        "ClusterQueue", cluster_queue, {"namespaceSelector": {}, "resourceGroups": [
            {"coveredResources": ["nvidia.com/gpu"], "flavors": [{"name": flavor, "resources": [quota]}]}],
            **cluster_queue_spec}))
    custom.create_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, namespace, "localqueues", kueue_object(
        "LocalQueue", "gpu-trials", {"clusterQueue": cluster_queue}))
    try:
        yield "gpu-trials"
    finally:
        custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", cluster_queue)
        custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "resourceflavors", flavor)


@pytest.fixture
def local_queue(cluster: Cluster, kueue: object, namespace: str) -> Iterator[str]:
    with gpu_queue(cluster, namespace, GPU_QUOTA) as queue:
        yield queue


@pytest.fixture
def preempting_queue(cluster: Cluster, kueue: object, namespace: str) -> Iterator[str]:
    """A 1-GPU queue whose ClusterQueue preempts lower-priority workloads, and WorkloadPriorityClasses
    `<namespace>-low` (10) and `<namespace>-high` (1000)."""
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    classes = {f"{namespace}-low": 10, f"{namespace}-high": 1000}
    for name, value in classes.items():
        custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "workloadpriorityclasses", {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "WorkloadPriorityClass",
            "metadata": {"name": name}, "value": value})
    try:
        with gpu_queue(cluster, namespace, 1, preemption={"withinClusterQueue": "LowerPriority"}) as queue:
            yield queue
    finally:
        for name in classes:
            custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "workloadpriorityclasses", name)


def queued_job(name: str, namespace: str, queue: str, trials: int = TRIALS, args: list[str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The stand-in trainer's TuningJob whose trials are 1-GPU Jobs (nothing else requested) in `queue`, all at
    once; `labels` go on each trial's Job."""
    job = stand_in_job(name, namespace, args=args or ["--steps", str(STEPS), "--step-seconds", str(STEP_SECONDS)],
                       budget={"maxTrials": trials, "parallelism": trials})
    template = job["spec"]["trial"].pop("template")
    template["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    job["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"labels": labels or {}},
                                        "spec": {"parallelism": 1, "template": template}}
    job["spec"]["trial"]["queueName"] = queue
    return job


class Watcher:
    """Follows one kind of object in a thread (`list_call(*args)` lists them) and folds every change into `fold`."""

    def __init__(self, fold: Callable[[dict[str, Any]], None], list_call: Callable[..., Any], *args: Any) -> None:
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(fold, list_call, args), daemon=True)
        self.thread.start()

    def _run(self, fold: Callable[[dict[str, Any]], None], list_call: Callable[..., Any],
             args: tuple[Any, ...]) -> None:
        try:
            version = None
            while not self.stopped.is_set():
                stream = kubernetes.watch.Watch().stream(list_call, *args, timeout_seconds=2,
                                                         **({"resource_version": version} if version else {}))
                for event in stream:
                    obj = event["object"]  # a typed object (pods, Jobs) or a dict (custom objects)
                    obj = obj if isinstance(obj, dict) else SERIALIZE.sanitize_for_serialization(obj)
                    version = obj["metadata"]["resourceVersion"]
                    fold(obj)
        except BaseException as error:  # reported by the test thread
            self.errors.append(error)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
        assert not self.errors, self.errors


def finish_watched(cluster: Cluster, namespace: str, operator: OperatorProcess, job: dict[str, Any],
                   watchers: list[Watcher]) -> dict[str, Any]:
    """Apply the TuningJob and wait (300 s) until it finished, then stop the watchers (whatever happened)."""
    try:
        apply(cluster, job)
        return wait_finished(cluster, namespace, job["metadata"]["name"], 300, operator)
    finally:
        for watcher in watchers:
            watcher.stop()


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_cluster_queue_of_two_gpus_runs_four_queued_one_gpu_trials_two_at_a_time_and_all_succeed(
    cluster: Cluster, namespace: str, operator: OperatorProcess, local_queue: str, tmp_path: Path
):
    core = kubernetes.client.CoreV1Api(cluster.api)
    batch = kubernetes.client.BatchV1Api(cluster.api)
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    running_pods: set[str] = set()
    unsuspended_jobs: set[str] = set()
    most = {"pods": 0, "jobs": 0}
    pending: dict[str, dict[str, Any]] = {}  # Trial name -> its status when first seen Pending
    states: dict[str, list[str | None]] = {}  # Trial name -> every state seen, for the failure message
    suspends: dict[str, list[bool | None]] = {}  # Job name -> every spec.suspend seen
    lock = threading.Lock()

    def fold_pod(pod: dict[str, Any]) -> None:
        with lock:
            name, phase = pod["metadata"]["name"], (pod.get("status") or {}).get("phase")
            (running_pods.add if phase == "Running" else running_pods.discard)(name)
            most["pods"] = max(most["pods"], len(running_pods))

    def fold_job(job: dict[str, Any]) -> None:
        with lock:
            spec, status = job["spec"], job.get("status") or {}
            suspends.setdefault(job["metadata"]["name"], []).append(spec.get("suspend"))
            ended = any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                        for c in status.get("conditions") or [])
            holding = spec.get("suspend") is False and not ended and not job["metadata"].get("deletionTimestamp")
            (unsuspended_jobs.add if holding else unsuspended_jobs.discard)(job["metadata"]["name"])
            most["jobs"] = max(most["jobs"], len(unsuspended_jobs))

    def fold_trial(trial: dict[str, Any]) -> None:
        status = trial.get("status") or {}
        with lock:
            states.setdefault(trial["metadata"]["name"], []).append(status.get("state"))
            if status.get("state") == "Pending":
                pending.setdefault(trial["metadata"]["name"], status)

    watchers = [Watcher(fold_pod, core.list_namespaced_pod, namespace),
                Watcher(fold_job, batch.list_namespaced_job, namespace),
                Watcher(fold_trial, custom.list_namespaced_custom_object, "ktune.dev", "v1alpha1", namespace, "trials")]
    finished = finish_watched(cluster, namespace, operator, queued_job("queued", namespace, local_queue), watchers)

    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    trials = trials_of(cluster, namespace, "queued")
    assert sorted(trials) == list(range(TRIALS))
    assert [t["status"]["state"] for t in trials.values()] == ["Succeeded"] * TRIALS
    assert all(t["status"]["attempts"] == 1 for t in trials.values()), "waiting in the queue is no failure"
    # Kueue, not ktune's parallelism (4), held the trials back: at most 2 admitted Jobs, 2 running pods at once.
    assert 1 <= most["pods"] <= GPU_QUOTA and 1 <= most["jobs"] <= GPU_QUOTA, most
    assert pending, f"no trial was seen waiting for admission: Trial states {states}, Job suspends {suspends}"
    for status in pending.values():
        assert status["reason"] == "QueueAdmission" and "LocalQueue gpu-trials" in status["message"], status
    # A queued trial's wait (at least one trial's run, 6 s) is not in its hours: its startTime moved past the
    # Trial's creation by about that much (times have 1 s precision).
    by_name = {t["metadata"]["name"]: t for t in trials.values()}
    waits = {name: seconds(by_name[name]["status"]["startTime"])
             - seconds(by_name[name]["metadata"]["creationTimestamp"]) for name in pending}
    assert max(waits.values()) >= STEPS * STEP_SECONDS / 2, waits


def test_the_crd_refuses_a_queue_name_for_a_pod_trial_with_the_fix(cluster: Cluster, namespace: str,
                                                                    operator_kubeconfig: Path):
    job = stand_in_job("podqueued", namespace)
    job["spec"]["trial"]["queueName"] = "gpu-trials"
    with pytest.raises(Exception) as refused:
        apply(cluster, job)
    assert "queueName needs resource" in str(refused.value)
    assert "use a batch/v1 Job with parallelism 1 as spec.trial.resource" in str(refused.value)


def test_a_trial_kueue_preempts_waits_again_and_reruns_in_the_same_attempt(
    cluster: Cluster, namespace: str, operator: OperatorProcess, preempting_queue: str, tmp_path: Path
):
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    batch = kubernetes.client.BatchV1Api(cluster.api)
    launches = tmp_path / "launches.log"
    states: list[str | None] = []

    def fold_trial(trial: dict[str, Any]) -> None:
        state = (trial.get("status") or {}).get("state")
        if not states or states[-1] != state:
            states.append(state)

    watcher = Watcher(fold_trial, custom.list_namespaced_custom_object, "ktune.dev", "v1alpha1", namespace, "trials")
    try:
        apply(cluster, queued_job("preempted", namespace, preempting_queue, trials=1,
                                  args=["--steps", "30", "--step-seconds", "0.5", "--launch-log", str(launches)],
                                  labels={"kueue.x-k8s.io/priority-class": f"{namespace}-low"}))

        def scraped() -> bool:
            trial = trials_of(cluster, namespace, "preempted").get(0) or {}
            return bool((trial.get("status") or {}).get("metrics"))

        wait_for(scraped, 120, "the trial to run and be scraped", operator)
        urgent = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "urgent", "labels": {
            "kueue.x-k8s.io/queue-name": preempting_queue, "kueue.x-k8s.io/priority-class": f"{namespace}-high"}},
            "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "ignored-by-the-node-agent",
                                     "command": [sys.executable, "-c", "import time; time.sleep(3)"],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
        batch.create_namespaced_job(namespace, urgent)
        finished = wait_finished(cluster, namespace, "preempted", 240, operator)
    finally:
        watcher.stop()

    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    trial = trials_of(cluster, namespace, "preempted")[0]
    assert trial["status"]["state"] == "Succeeded" and trial["status"]["attempts"] == 1, trial["status"]
    urgent_job = batch.read_namespaced_job("urgent", namespace)
    assert any(c.type == "Complete" and c.status == "True" for c in urgent_job.status.conditions or [])
    # Running, then Pending again once Kueue suspended its Job for the urgent one, then run again to the end.
    assert "Pending" in states[states.index("Running"):], states
    starts = [line.split()[1] for line in launches.read_text().splitlines() if line.startswith("start ")]
    assert starts == ["0", "0"], "trial 0's trainer ran twice: before the preemption and after"


def pytorch_queued_job(name: str, namespace: str, queue: str) -> dict[str, Any]:
    """Two PyTorchJob trials at once, each a Master and a Worker of the stand-in trainer with 1 GPU apiece."""
    job = stand_in_job(name, namespace, budget={"maxTrials": 2, "parallelism": 2})
    job["spec"]["trial"].pop("template")
    steps = ["--steps", str(STEPS), "--step-seconds", str(STEP_SECONDS)]
    replicas = {}
    for replica, args in (("Master", steps), ("Worker", [*steps, "--metric", "side_score"])):
        container = {"name": "pytorch", "image": "ktune/stand-in:test", "command": [sys.executable, str(STAND_IN)],
                     "args": args, "resources": {"limits": {"nvidia.com/gpu": "1"}}}
        replicas[replica] = {"replicas": 1, "restartPolicy": "Never", "template": {"spec": {"containers": [container]}}}
    job["spec"]["trial"]["resource"] = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                        "spec": {"pytorchReplicaSpecs": replicas}}
    job["spec"]["trial"]["queueName"] = queue
    return job


def wait_for_kueue_pytorchjobs(cluster: Cluster, namespace: str, queue: str) -> None:
    """Kueue sets up its PyTorchJob integration once it sees the kind served (it polls with a backoff of up to
    2 minutes when it started before the training-operator's CRDs): until then its webhook for queued PyTorchJobs
    does not answer. A server-side dry run of a queued PyTorchJob passes that webhook and creates nothing."""
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    probe = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {
        "name": "kueue-probe", "labels": {"kueue.x-k8s.io/queue-name": queue}}, "spec": {"pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch", "image": "i"}]}}}}}}

    def served() -> bool:
        try:
            custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", probe,
                                                   dry_run="All")
        except kubernetes.client.ApiException:
            return False
        return True

    wait_for(served, 200, "Kueue's PyTorchJob webhook to answer")


def test_queued_pytorchjob_trials_run_one_at_a_time_on_two_gpus_and_succeed(
    cluster: Cluster, namespace: str, training_operator: object, operator: OperatorProcess, local_queue: str
):
    wait_for_kueue_pytorchjobs(cluster, namespace, local_queue)
    core = kubernetes.client.CoreV1Api(cluster.api)
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    running: set[str] = set()
    admitted: set[str] = set()
    most = {"pods": 0, "admitted": 0}
    pending: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def fold_pod(pod: dict[str, Any]) -> None:
        with lock:
            name = pod["metadata"]["name"]
            (running.add if (pod.get("status") or {}).get("phase") == "Running" else running.discard)(name)
            most["pods"] = max(most["pods"], len(running))

    def fold_pytorchjob(job: dict[str, Any]) -> None:
        with lock:
            ended = any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
                        for c in (job.get("status") or {}).get("conditions") or [])
            holding = (job["spec"].get("runPolicy") or {}).get("suspend") is False and not ended
            (admitted.add if holding else admitted.discard)(job["metadata"]["name"])
            most["admitted"] = max(most["admitted"], len(admitted))

    def fold_trial(trial: dict[str, Any]) -> None:
        status = trial.get("status") or {}
        if status.get("state") == "Pending":
            with lock:
                pending.setdefault(trial["metadata"]["name"], status)

    watchers = [Watcher(fold_pod, core.list_namespaced_pod, namespace),
                Watcher(fold_pytorchjob, custom.list_namespaced_custom_object, "kubeflow.org", "v1", namespace,
                        "pytorchjobs"),
                Watcher(fold_trial, custom.list_namespaced_custom_object, "ktune.dev", "v1alpha1", namespace, "trials")]
    finished = finish_watched(cluster, namespace, operator, pytorch_queued_job("torch", namespace, local_queue),
                              watchers)

    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    trials = trials_of(cluster, namespace, "torch")
    assert [(t["status"]["state"], t["status"]["attempts"]) for t in trials.values()] == [("Succeeded", 1)] * 2
    # One trial (2 pods, 2 GPUs) admitted at a time: the other waited suspended, Pending, in the queue.
    assert most["admitted"] == 1 and 1 <= most["pods"] <= GPU_QUOTA, most
    assert pending, "no trial was seen waiting for admission"
    for status in pending.values():
        assert status["reason"] == "QueueAdmission" and status["message"].startswith("training job torch-"), status
