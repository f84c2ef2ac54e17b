"""The Kubernetes backend: each attempt one pod, named `<job>-<number>-<attempt>` and owned by its Trial.

A `PodBackend` is a view over one reconcile pass: the job's pods as the pod cache saw them at the
start of the pass, and the Trial objects that own them. It turns a pod's status into the plain facts
the trial lifecycle (`ktune.trials.driver`) decides on, and reads a trial's metrics from its pod's
`/metrics` page or from Prometheus.

A pod is an attempt's only when its controller is the attempt's Trial (by uid, `ktune.operator.ownership`): a
pod of the same name that another owner controls (an earlier job's of the same name, not yet garbage-collected)
is never observed, stopped or deleted, and the attempt waits until it is gone.
"""

from collections.abc import Callable, Mapping
from typing import Any

from ktune import metrics
from ktune.engine import TrialRecord
from ktune.metrics import MetricsError, Scraped, TrialMetrics
from ktune.operator.cluster import AlreadyExists, ApiError, Cluster
from ktune.operator.pods import controller_uid, trial_pod_manifest, trial_pod_name
from ktune.operator.trials import epoch
from ktune.spec import TuningJob
from ktune.trials.backend import LaunchDeferred, LaunchRefused, Observation, Phase

Scrape = Callable[[str, float], TrialMetrics]
QueryPrometheus = Callable[[str, metrics.TrialSeries, object | None, float], Scraped]
ReadMetrics = Callable[[int, dict[str, Any], object | None], Scraped]
"""(trial number, the attempt's pod, the cursor its previous read returned) -> what is new since."""

# A pod waiting with one of these reasons waits for its image (or its container's config): the driver fails
# the attempt once `image_pull_timeout_seconds` passed.
IMAGE_WAITING_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


class PodBackend:
    """Trial attempts as pods of one TuningJob, for one reconcile pass."""

    def __init__(self, cluster: Cluster, job: TuningJob, namespace: str, pods: Mapping[str, dict[str, Any]],
                 owners: Mapping[int, Mapping[str, Any]], read_metrics: ReadMetrics,
                 delete_succeeded: bool = False, final_result: Callable[[dict[str, Any]], str | None] | None = None):
        """`final_result`: where a succeeded pod's result comes from when it wrote no termination message (the
        last values in its log, for `metricsSource: logs`)."""
        self.cluster = cluster
        self.job = job
        self.namespace = namespace
        self.pods = dict(pods)
        self.owners = owners
        self.read_metrics = read_metrics
        self.delete_succeeded = delete_succeeded
        self.final_result = final_result

    def _pod(self, number: int, attempt: int) -> dict[str, Any] | None:
        """The attempt's pod, when the pass saw it and it is the trial's own."""
        pod = self.pods.get(trial_pod_name(self.job.name, number, attempt))
        return pod if pod is not None and self._owns(number, pod) else None

    def _owns(self, number: int, pod: Mapping[str, Any]) -> bool:
        owner = self.owners.get(number)
        return owner is not None and controller_uid(pod) == owner["metadata"]["uid"]

    def launch(self, record: TrialRecord, attempt: int) -> None:
        trial = self.job.spec.trial
        pod = trial_pod_manifest(trial.template, self.job.name, record.number, record.params, attempt,
                                 trial.metrics_port, self.owners[record.number])
        name = pod["metadata"]["name"]
        try:
            self.pods[name] = self.cluster.create_pod(self.namespace, pod)
        except AlreadyExists:
            existing = next((p for p in self.cluster.list_pods(self.namespace, self.job.name)
                             if p["metadata"]["name"] == name), None)
            if existing is not None and self._owns(record.number, existing):
                self.pods[name] = existing  # made by this operator before a restart: observed as it is
                return
            holder = controller_uid(existing) if existing is not None else None
            raise LaunchDeferred("PodNameTaken", f"pod {name} exists and is not this trial's (its controller: "
                                 f"{holder or 'none'}); waiting for it to be deleted (an earlier TuningJob of "
                                 "the same name leaves its pods until the garbage collector removes them)") from None
        except ApiError as error:
            raise launch_refusal(error) from None

    def observe(self, number: int, attempt: int) -> Observation:
        pod = self._pod(number, attempt)
        if pod is None:
            return Observation(Phase.GONE, reason="PodDeleted", message="the trial's pod was deleted")
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            message = termination_message(pod)
            if not message.strip() and self.final_result is not None:
                return Observation(Phase.SUCCEEDED, result=self.final_result(pod), result_source="the container's log")
            return Observation(Phase.SUCCEEDED, result=message or None, result_source="termination message")
        if phase == "Failed":
            reason, message = failure_of(pod)
            return Observation(Phase.FAILED, reason=reason, message=message)
        if pod["metadata"].get("deletionTimestamp"):
            node = (pod.get("spec") or {}).get("nodeName") or "no node"
            return Observation(Phase.TERMINATING, message=f"pod {pod['metadata']['name']} on {node}",
                               since=epoch(pod["metadata"]["deletionTimestamp"]))
        if phase == "Running":
            return Observation(Phase.RUNNING)
        return pending_observation(pod)

    def scrape(self, number: int, attempt: int, cursor: object | None) -> Scraped:
        pod = self._pod(number, attempt)
        if pod is None:
            raise MetricsError("the trial's pod is gone")
        return self.read_metrics(number, pod, cursor)

    def stop(self, number: int, attempt: int, grace_seconds: float | None) -> None:
        pod = self._pod(number, attempt)
        if pod is not None and not pod_finished(pod):
            self.cluster.delete_pod(self.namespace, pod["metadata"]["name"],
                                    grace_seconds=None if grace_seconds is None else int(grace_seconds))

    def delete(self, number: int, attempt: int, *, force: bool = False) -> None:
        pod = self._pod(number, attempt)
        if pod is not None:
            self.cluster.delete_pod(self.namespace, pod["metadata"]["name"], grace_seconds=0 if force else None)

    def release(self, number: int, attempt: int) -> None:
        """A succeeded pod goes once its result is recorded (`delete_succeeded`); failed ones stay for their logs
        until `failed_pod_retention_seconds` (the reconciler's sweep), all of them at the latest with the Trial."""
        pod = self._pod(number, attempt)
        if self.delete_succeeded and pod is not None and (pod.get("status") or {}).get("phase") == "Succeeded":
            self.cluster.delete_pod(self.namespace, pod["metadata"]["name"])


def direct_or_prometheus(job: TuningJob, namespace: str, timeout: float, scrape: Scrape,
                         query_prometheus: QueryPrometheus, read_logs: ReadMetrics | None = None) -> ReadMetrics:
    """How this job's trial metrics are read: from the pod's `/metrics` page, from its Prometheus server, or from
    its log (`read_logs`)."""
    source = job.spec.metrics_source

    def read(number: int, pod: dict[str, Any], cursor: object | None) -> Scraped:
        if source.type == "logs" and read_logs is not None:
            return read_logs(number, pod, cursor)
        if source.type == "prometheus":
            series = metrics.TrialSeries(namespace, job.name, number, pod["metadata"]["name"],
                                         epoch(pod["metadata"].get("creationTimestamp")))
            return query_prometheus(source.url or "", series, cursor, timeout)
        pod_ip = (pod.get("status") or {}).get("podIP")
        if not pod_ip:
            raise MetricsError("the pod has no IP")
        return Scraped([scrape(metrics.metrics_url(pod_ip, job.spec.trial.metrics_port), timeout)])

    return read


def launch_refusal(error: ApiError) -> Exception:
    """What a refused pod create means for the attempt: an invalid pod (422) can never start; a used-up quota
    passes once other pods end; another refusal (Pod Security, a LimitRange, a webhook) fails the attempt, and
    the retry rules apply. Errors of the API itself (429, 5xx) are left to the pass, which tries again."""
    if error.status == 422:
        return LaunchRefused("PodRejected", str(error))
    if error.status == 403 and "exceeded quota" in str(error):
        return LaunchDeferred("QuotaExceeded", str(error))
    if error.status in (400, 403, 404):
        return LaunchRefused("PodRejected", str(error), retryable=True)
    return error


def pod_finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_finished_at(pod: Mapping[str, Any]) -> float | None:
    """When a finished pod's last container ended (its creation time when no container says)."""
    ends = [epoch(((status.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for status in (pod.get("status") or {}).get("containerStatuses") or []]
    known = [end for end in ends if end is not None]
    return max(known) if known else epoch(pod["metadata"].get("creationTimestamp"))


def pending_observation(pod: Mapping[str, Any]) -> Observation:
    """A pod not running yet, with what it waits for when that could last (its image, a node)."""
    since = epoch(pod["metadata"].get("creationTimestamp"))
    pod_status = pod.get("status") or {}
    for container in pod_status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_WAITING_REASONS:
            return Observation(Phase.PENDING, reason=waiting["reason"], message=waiting.get("message") or "",
                               waiting_for="image", since=since)
    for condition in pod_status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return Observation(Phase.PENDING, reason="Unschedulable", message=condition.get("message") or "",
                               waiting_for="node", since=since)
    return Observation(Phase.PENDING, since=since)


def _trainer_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first container's status: the trainer is the template's first container."""
    first = pod["spec"]["containers"][0]["name"]
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == first:
            return container
    return {}


def termination_message(pod: Mapping[str, Any]) -> str:
    terminated = (_trainer_status(pod).get("state") or {}).get("terminated") or {}
    return terminated.get("message") or ""


def failure_of(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(reason, message) of a failed pod: the trainer container's reason (OOMKilled, Error), else the pod's."""
    terminated = (_trainer_status(pod).get("state") or {}).get("terminated") or {}
    pod_status = pod.get("status") or {}
    reason = terminated.get("reason") or pod_status.get("reason") or "Error"
    message = terminated.get("message") or pod_status.get("message") or ""
    if terminated.get("exitCode") is not None:
        message = f"exit code {terminated['exitCode']}" + (f": {message}" if message else "")
    return reason, message
