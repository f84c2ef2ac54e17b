"""The Kubernetes backend for trials of several pods: each attempt one `batch/v1` Job (Indexed for multi-node
training), named `<job>-<number>-<attempt>` like a trial pod and owned by its Trial.

The Job controller (in kube-controller-manager) runs the pods; this backend reads the Job's `Complete` and
`Failed` conditions for the attempt's outcome, and one pod of it, the metrics pod, for its metrics and result:
the pod with completion index 0 (`batch.kubernetes.io/job-completion-index=0`) of an Indexed Job, the first pod
of a NonIndexed one. Every pod gets the trainer contract's variables and the trial pod defaults
(`ktune.operator.pods.trial_pod_manifest`); the Job's pods carry the trial's labels, so the operator's pod
watch sees them and wakes the job. Stopping deletes the Job with foreground propagation: the Job stays
(Terminating) until each of its pods is gone, so a pruned trial frees all its GPUs before it counts as gone.

The pass lists the job's Jobs from the API (no watch-fed cache as for pods: a LIST is read from etcd, so an
attempt created by the previous pass is never missing from it).
"""

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from ktune.engine import TrialRecord
from ktune.metrics import MetricsError, Scraped
from ktune.operator.cluster import AlreadyExists, ApiError, Cluster
from ktune.operator.pod_backend import (
    ReadMetrics,
    failure_of,
    launch_refusal,
    pending_observation,
    termination_message,
)
from ktune.operator.pods import (
    ATTEMPT_ANNOTATION,
    controller_uid,
    owner_reference,
    pod_attempt,
    trial_labels,
    trial_pod_manifest,
    trial_pod_name,
)
from ktune.operator.queueing import admission_wait, queued_manifest
from ktune.operator.trials import epoch
from ktune.spec import TuningJob
from ktune.trials.backend import LaunchDeferred, Observation, Phase

COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def trial_job_manifest(job: TuningJob, number: int, params: Mapping[str, Any], attempt: int,
                       trial: Mapping[str, Any]) -> dict[str, Any]:
    """The `batch/v1` Job of attempt `attempt` of trial `number`: the job's resource with its pod template made
    as a trial pod's (contract env in every container, security defaults, restartPolicy Never)."""
    resource = job.spec.trial.resource
    assert resource is not None, "a Job trial needs spec.trial.resource"
    pod = trial_pod_manifest(job.spec.trial.template, job.name, number, params, attempt,
                             job.spec.trial.metrics_port, trial)
    metadata = resource.manifest.get("metadata") or {}
    spec = {key: value for key, value in resource.manifest["spec"].items() if key != "template"}
    spec["template"] = {"metadata": {"labels": pod["metadata"]["labels"],
                                     "annotations": pod["metadata"]["annotations"]},
                        "spec": pod["spec"]}
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": trial_pod_name(job.name, number, attempt),
            "labels": {**(metadata.get("labels") or {}), **trial_labels(job.name, number)},
            "annotations": {**(metadata.get("annotations") or {}), ATTEMPT_ANNOTATION: str(attempt)},
            "ownerReferences": [owner_reference(trial)],
        },
        "spec": spec,
    }


def job_controlled(pod: Mapping[str, Any]) -> bool:
    """Whether a pod's controller is a `batch/v1` Job (a Job trial's pod, not a trial pod of ktune's own)."""
    for reference in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller"):
            return reference.get("kind") == "Job" and reference.get("apiVersion") == "batch/v1"
    return False


def condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The Job's condition of type `kind` when it is True."""
    for entry in (job.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind and entry.get("status") == "True":
            return entry
    return None


def trial_job_milestone(trial_job: Mapping[str, Any]) -> Hashable:
    """What of a trial Job wakes its TuningJob when it changes: its True conditions, and whether it is being
    deleted (not each change of its active and ready counts)."""
    conditions = (trial_job.get("status") or {}).get("conditions") or []
    true = sorted(entry.get("type") or "" for entry in conditions if entry.get("status") == "True")
    return tuple(true), bool(trial_job["metadata"].get("deletionTimestamp"))


class JobBackend:
    """Trial attempts as `batch/v1` Jobs of one TuningJob, for one reconcile pass."""

    def __init__(self, cluster: Cluster, job: TuningJob, namespace: str, jobs: Iterable[dict[str, Any]],
                 pods: Iterable[dict[str, Any]], owners: Mapping[int, Mapping[str, Any]], read_metrics: ReadMetrics,
                 delete_succeeded: bool = False, final_result: Callable[[dict[str, Any]], str | None] | None = None):
        """`jobs` and `pods`: the TuningJob's Jobs and pods as the pass saw them (by its labels, whoever owns
        them); `final_result` as `PodBackend`'s."""
        self.cluster = cluster
        self.job = job
        self.namespace = namespace
        self.jobs = {trial_job["metadata"]["name"]: trial_job for trial_job in jobs}
        self.pods = list(pods)
        self.owners = owners
        self.read_metrics = read_metrics
        self.delete_succeeded = delete_succeeded
        self.final_result = final_result

    @property
    def _queue_name(self) -> str | None:
        resource = self.job.spec.trial.resource
        return resource.queue_name if resource is not None else None

    def _job(self, number: int, attempt: int) -> dict[str, Any] | None:
        """The attempt's Job, when the pass saw it and its controller is the trial's Trial."""
        found = self.jobs.get(trial_pod_name(self.job.name, number, attempt))
        return found if found is not None and self._owns(number, found) else None

    def _owns(self, number: int, obj: Mapping[str, Any]) -> bool:
        owner = self.owners.get(number)
        return owner is not None and controller_uid(obj) == owner["metadata"]["uid"]

    def job_pods(self, trial_job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods the Job controls, oldest first."""
        uid = trial_job["metadata"].get("uid")
        owned = [pod for pod in self.pods if uid is not None and controller_uid(pod) == uid]
        return sorted(owned, key=lambda pod: (pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"]))

    def metrics_pod(self, trial_job: Mapping[str, Any]) -> dict[str, Any] | None:
        """Index 0 of an Indexed Job (its newest pod, should the Job have replaced one), else the Job's first pod."""
        pods = self.job_pods(trial_job)
        if (trial_job.get("spec") or {}).get("completionMode") == "Indexed":
            first = [pod for pod in pods if (pod["metadata"].get("labels") or {}).get(COMPLETION_INDEX_LABEL) == "0"]
            return first[-1] if first else None
        return pods[0] if pods else None

    def delete_strays(self, held: Mapping[int, int], now: float, failed_retention_seconds: float) -> None:
        """Delete the trials' Jobs no live attempt holds (`held`: trial number -> attempt), as the reconciler does
        with stray pods: a running one (a stopped trial's, left by a crash between writing its outcome and deleting
        it), a Complete one (when succeeded ones go), a Failed one once `failed_retention_seconds` passed."""
        numbers = {owner["metadata"]["uid"]: number for number, owner in self.owners.items()}
        for trial_job in self.jobs.values():
            metadata = trial_job["metadata"]
            number = numbers.get(controller_uid(trial_job) or "")
            if number is None or metadata.get("deletionTimestamp") or held.get(number) == pod_attempt(trial_job):
                continue
            failed = condition(trial_job, "Failed")
            if failed is not None:
                ended = epoch(failed.get("lastTransitionTime")) or epoch(metadata.get("creationTimestamp")) or now
                if now - ended < failed_retention_seconds:
                    continue
            elif condition(trial_job, "Complete") is not None and not self.delete_succeeded:
                continue
            self.cluster.delete_trial_job(self.namespace, metadata["name"])

    def launch(self, record: TrialRecord, attempt: int) -> None:
        manifest = trial_job_manifest(self.job, record.number, record.params, attempt, self.owners[record.number])
        manifest = queued_manifest(manifest, self._queue_name)
        name = manifest["metadata"]["name"]
        try:
            self.jobs[name] = self.cluster.create_trial_job(self.namespace, manifest)
        except AlreadyExists:
            existing = next((j for j in self.cluster.list_trial_jobs(self.namespace, self.job.name)
                             if j["metadata"]["name"] == name), None)
            if existing is not None and self._owns(record.number, existing):
                self.jobs[name] = existing  # made by this operator before a restart: observed as it is
                return
            holder = controller_uid(existing) if existing is not None else None
            raise LaunchDeferred("JobNameTaken", f"Job {name} exists and is not this trial's (its controller: "
                                 f"{holder or 'none'}); waiting for it to be deleted") from None
        except ApiError as error:
            raise launch_refusal(error) from None

    def observe(self, number: int, attempt: int) -> Observation:
        trial_job = self._job(number, attempt)
        if trial_job is None:
            return Observation(Phase.GONE, reason="JobDeleted", message="the trial's Job was deleted")
        if condition(trial_job, "Complete") is not None:
            return self._succeeded(trial_job)
        failed = condition(trial_job, "Failed")
        if failed is not None:
            return Observation(Phase.FAILED, reason=failed.get("reason") or "Failed",
                               message=self._failure_message(trial_job, failed))
        metadata = trial_job["metadata"]
        if metadata.get("deletionTimestamp"):
            return Observation(Phase.TERMINATING, message=f"Job {metadata['name']} (foreground deletion: waiting "
                               "for its pods)", since=epoch(metadata["deletionTimestamp"]))
        waiting = admission_wait(trial_job, self._queue_name)  # Kueue has not admitted it yet, or preempted it
        if waiting is not None:
            return waiting
        pod = self.metrics_pod(trial_job)
        if pod is not None and (pod.get("status") or {}).get("phase") == "Running":
            return Observation(Phase.RUNNING)
        if pod is not None and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            # Index 0 ended, the Job has not: its other pods still run, or its controller has yet to write the
            # verdict. Nothing more to scrape, nothing to time out: the Job's condition decides.
            return Observation(Phase.PENDING, message=f"pod {pod['metadata']['name']} (index 0) ended; waiting for "
                                                      f"Job {metadata['name']}'s verdict")
        if pod is not None:
            return pending_observation(pod)
        # No metrics pod yet: bounded like a pod no node takes (a quota or an admission webhook can keep the Job
        # controller from creating it for ever), so the attempt fails after `unschedulable_timeout_seconds`.
        return Observation(Phase.PENDING, reason="NoMetricsPod", waiting_for="node",
                           since=epoch(metadata.get("creationTimestamp")),
                           message=f"Job {metadata['name']} has no running pod with completion index 0 (see its "
                                   "events: a quota or an admission policy may refuse its pods)")

    def _succeeded(self, trial_job: Mapping[str, Any]) -> Observation:
        pod = self.metrics_pod(trial_job)
        if pod is None:
            return Observation(Phase.SUCCEEDED, result=None, result_source="the Job's metrics pod (gone)")
        message = termination_message(pod)
        if not message.strip() and self.final_result is not None:
            return Observation(Phase.SUCCEEDED, result=self.final_result(pod), result_source="the container's log")
        return Observation(Phase.SUCCEEDED, result=message or None,
                           result_source=f"termination message of pod {pod['metadata']['name']}")

    def _failure_message(self, trial_job: Mapping[str, Any], failed: Mapping[str, Any]) -> str:
        """The Job's Failed message, with the first failed pod's own reason (its exit code) where one is known."""
        message = failed.get("message") or ""
        broken = [pod for pod in self.job_pods(trial_job) if (pod.get("status") or {}).get("phase") == "Failed"]
        if broken:
            reason, detail = failure_of(broken[0])
            message += f" (pod {broken[0]['metadata']['name']}: {reason}, {detail})"
        return message

    def scrape(self, number: int, attempt: int, cursor: object | None) -> Scraped:
        trial_job = self._job(number, attempt)
        pod = self.metrics_pod(trial_job) if trial_job is not None else None
        if pod is None:
            raise MetricsError("the trial's Job has no metrics pod (completion index 0) yet"
                               if trial_job is not None else "the trial's Job is gone")
        return self.read_metrics(number, pod, cursor)

    def stop(self, number: int, attempt: int, grace_seconds: float | None) -> None:
        """Delete the Job and, in the foreground, all its pods (each with its own termination grace period)."""
        trial_job = self._job(number, attempt)
        if trial_job is not None and not job_finished(trial_job) and not trial_job["metadata"].get("deletionTimestamp"):
            self.cluster.delete_trial_job(self.namespace, trial_job["metadata"]["name"])

    def delete(self, number: int, attempt: int, *, force: bool = False) -> None:
        """Delete the Job; `force` also removes its pods at once (a lost node never confirms their end)."""
        trial_job = self._job(number, attempt)
        if trial_job is None:
            return
        if not trial_job["metadata"].get("deletionTimestamp"):
            self.cluster.delete_trial_job(self.namespace, trial_job["metadata"]["name"])
        if force:
            for pod in self.job_pods(trial_job):
                self.cluster.delete_pod(self.namespace, pod["metadata"]["name"], grace_seconds=0)

    def release(self, number: int, attempt: int) -> None:
        """A Complete Job goes once its result is recorded (`delete_succeeded`); a failed one stays for its pods'
        logs until its Trial is deleted."""
        trial_job = self._job(number, attempt)
        if (self.delete_succeeded and trial_job is not None and condition(trial_job, "Complete") is not None
                and not trial_job["metadata"].get("deletionTimestamp")):
            self.cluster.delete_trial_job(self.namespace, trial_job["metadata"]["name"])


def job_finished(trial_job: Mapping[str, Any]) -> bool:
    """Whether the Job ended: Complete or Failed."""
    return condition(trial_job, "Complete") is not None or condition(trial_job, "Failed") is not None
