"""The Kubernetes backend for trials of several pods: each attempt one trial resource (`spec.trial.resource`: a
`batch/v1` Job, Indexed for multi-node training, or a Kubeflow PyTorchJob, TFJob, MPIJob or XGBoostJob), named
`<job>-<number>-<attempt>` like a trial pod and owned by its Trial.

The resource's controller runs the pods (kube-controller-manager's Job controller, Kubeflow's training-operator);
this backend reads the resource's verdict for the attempt's outcome, and one pod of it, the metrics pod, for its
metrics and result (`ktune.operator.resource_adapters` says, per kind, which conditions and which pod). Every
container of every replica gets the trainer contract's variables and the trial pod defaults
(`ktune.operator.pods.trial_pod_manifest`); the pods carry the trial's labels, so the operator's pod watch sees
them and wakes the job. Stopping deletes the resource with foreground propagation: it stays (Terminating) until
each of its pods is gone, so a pruned trial frees all its GPUs before it counts as gone.

Two functions are the places to extend per feature: `trial_resource_manifest` builds what is created (the
contract in every pod template, the name, labels and owner), and `ResourceBackend._running` maps a resource that
has no verdict yet to an Observation.

The pass lists the job's resources from the API (no watch-fed cache as for pods: a LIST is read from etcd, so an
attempt created by the previous pass is never missing from it).
"""

from collections.abc import Callable, Iterable, Mapping
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
from ktune.operator.rendezvous import ensure_service, with_rendezvous
from ktune.operator.resource_adapters import ResourceAdapter, adapter_for, metrics_pod, resource_pods
from ktune.operator.trials import epoch
from ktune.spec import TuningJob
from ktune.spec.resource_kinds import map_pod_templates
from ktune.trials.backend import LaunchDeferred, Observation, Phase

METRICS_UNAVAILABLE = "MetricsUnavailable"


def trial_resource_manifest(job: TuningJob, number: int, params: Mapping[str, Any], attempt: int,
                            trial: Mapping[str, Any]) -> dict[str, Any]:
    """The resource of attempt `attempt` of trial `number`: the job's resource with each pod template made as a
    trial pod's (contract env in every container, security defaults), named and labelled as the attempt's."""
    resource = job.spec.trial.resource
    assert resource is not None, "a resource trial needs spec.trial.resource"

    def trial_template(template: dict[str, Any]) -> dict[str, Any]:
        """The template as a trial pod's: its own metadata (finalizers, ...) kept, with the trial's labels and
        annotations added."""
        pod = trial_pod_manifest(template, job.name, number, params, attempt, job.spec.trial.metrics_port, trial)
        metadata = {**(template.get("metadata") or {}), "labels": pod["metadata"]["labels"],
                    "annotations": pod["metadata"]["annotations"]}
        return {"metadata": metadata, "spec": pod["spec"]}

    manifest = map_pod_templates(resource.manifest, trial_template)
    metadata = manifest.get("metadata") or {}
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": trial_pod_name(job.name, number, attempt),
            "labels": {**(metadata.get("labels") or {}), **trial_labels(job.name, number)},
            "annotations": {**(metadata.get("annotations") or {}), ATTEMPT_ANNOTATION: str(attempt)},
            "ownerReferences": [owner_reference(trial)],
        },
        "spec": manifest["spec"],
    }


class ResourceBackend:
    """Trial attempts as trial resources of one TuningJob, for one reconcile pass."""

    def __init__(self, cluster: Cluster, job: TuningJob, namespace: str, resources: Iterable[dict[str, Any]],
                 pods: Iterable[dict[str, Any]], owners: Mapping[int, Mapping[str, Any]], read_metrics: ReadMetrics,
                 delete_succeeded: bool = False, final_result: Callable[[dict[str, Any]], str | None] | None = None):
        """`resources` and `pods`: the TuningJob's resources of its trial kind and its pods as the pass saw them
        (by its labels, whoever owns them); `final_result` as `PodBackend`'s."""
        resource = job.spec.trial.resource
        assert resource is not None, "a resource trial needs spec.trial.resource"
        self.adapter: ResourceAdapter = adapter_for(resource.api_version, resource.kind)
        self.selector = resource.primary_pod
        self.queue_name = resource.queue_name
        self.cluster = cluster
        self.job = job
        self.namespace = namespace
        self.resources = {obj["metadata"]["name"]: obj for obj in resources}
        self.pods = list(pods)
        self.owners = owners
        self.read_metrics = read_metrics
        self.delete_succeeded = delete_succeeded
        self.final_result = final_result

    def _resource(self, number: int, attempt: int) -> dict[str, Any] | None:
        """The attempt's resource, when the pass saw it and its controller is the trial's Trial."""
        found = self.resources.get(trial_pod_name(self.job.name, number, attempt))
        return found if found is not None and self._owns(number, found) else None

    def _owns(self, number: int, obj: Mapping[str, Any]) -> bool:
        owner = self.owners.get(number)
        return owner is not None and controller_uid(obj) == owner["metadata"]["uid"]

    def _delete(self, obj: Mapping[str, Any]) -> None:
        self.cluster.delete_trial_resource(self.namespace, self.adapter.api, obj["metadata"]["name"])

    def metrics_pod(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return metrics_pod(resource_pods(obj, self.pods), self.selector)

    def delete_strays(self, held: Mapping[int, int], now: float, failed_retention_seconds: float) -> None:
        """Delete the trials' resources no live attempt holds (`held`: trial number -> attempt), as the reconciler
        does with stray pods: a running one (a stopped trial's, left by a crash between writing its outcome and
        deleting it), a succeeded one (when succeeded ones go), a failed one once `failed_retention_seconds`
        passed."""
        numbers = {owner["metadata"]["uid"]: number for number, owner in self.owners.items()}
        for obj in self.resources.values():
            metadata = obj["metadata"]
            number = numbers.get(controller_uid(obj) or "")
            if number is None or metadata.get("deletionTimestamp") or held.get(number) == pod_attempt(obj):
                continue
            failed = self.adapter.failed_condition(obj)
            if failed is not None:
                ended = epoch(failed.get("lastTransitionTime")) or epoch(metadata.get("creationTimestamp")) or now
                if now - ended < failed_retention_seconds:
                    continue
            elif self.adapter.succeeded_condition(obj) is not None and not self.delete_succeeded:
                continue
            self._delete(obj)

    def launch(self, record: TrialRecord, attempt: int) -> None:
        manifest = trial_resource_manifest(self.job, record.number, record.params, attempt,
                                           self.owners[record.number])
        manifest = queued_manifest(manifest, self.queue_name)
        manifest = with_rendezvous(manifest)  # an Indexed Job of several ranks: their subdomain and torchrun's env
        name = manifest["metadata"]["name"]
        try:
            self.resources[name] = self.cluster.create_trial_resource(self.namespace, self.adapter.api, manifest)
        except AlreadyExists:
            existing = next((obj for obj in self.cluster.list_trial_resources(self.namespace, self.adapter.api,
                                                                              self.job.name)
                             if obj["metadata"]["name"] == name), None)
            if existing is not None and self._owns(record.number, existing):
                self.resources[name] = existing  # made by this operator before a restart: observed as it is
                ensure_service(self.cluster, self.namespace, existing)  # which may have stopped before making it
                return
            holder = controller_uid(existing) if existing is not None else None
            raise LaunchDeferred(f"{self.adapter.kind}NameTaken", f"{self.adapter.kind} {name} exists and is not "
                                 f"this trial's (its controller: {holder or 'none'}); waiting for it to be "
                                 "deleted") from None
        except ApiError as error:
            raise launch_refusal(error) from None
        ensure_service(self.cluster, self.namespace, self.resources[name])  # after the Job: it owns the Service

    def observe(self, number: int, attempt: int) -> Observation:
        obj = self._resource(number, attempt)
        kind = self.adapter.kind
        if obj is None:
            return Observation(Phase.GONE, reason=f"{kind}Deleted", message=f"the trial's {kind} was deleted")
        if self.adapter.succeeded_condition(obj) is not None:
            return self._succeeded(obj)
        failed = self.adapter.failed_condition(obj)
        if failed is not None:
            return Observation(Phase.FAILED, reason=failed.get("reason") or "Failed",
                               message=self._failure_message(obj, failed))
        metadata = obj["metadata"]
        if metadata.get("deletionTimestamp"):
            return Observation(Phase.TERMINATING, message=f"{kind} {metadata['name']} (foreground deletion: "
                               "waiting for its pods)", since=epoch(metadata["deletionTimestamp"]))
        return self._running(obj)

    def _running(self, obj: Mapping[str, Any]) -> Observation:
        """A resource with no verdict yet, not being deleted: waiting for its queue, or what its pods say."""
        waiting = admission_wait(obj, self.queue_name)  # Kueue has not admitted it yet, or preempted it
        if waiting is not None:
            return waiting
        pods = resource_pods(obj, self.pods)
        pod = metrics_pod(pods, self.selector)
        name, kind = obj["metadata"]["name"], self.adapter.kind
        phase = (pod.get("status") or {}).get("phase") if pod is not None else None
        stuck = _stuck(pods)
        if stuck is not None:
            return stuck  # one rank without a node (or its image) holds up all: the timeouts apply to every pod
        if phase == "Running":
            return Observation(Phase.RUNNING)
        if pod is not None and phase in ("Succeeded", "Failed"):
            # The metrics pod ended, the resource has not: its other pods still run, or its controller has yet to
            # write the verdict (or restarts the pod). Nothing more to scrape, nothing to time out: the verdict
            # decides.
            return Observation(Phase.PENDING, message=f"pod {pod['metadata']['name']} (the metrics pod) ended; "
                                                      f"waiting for {kind} {name}'s verdict")
        if pod is not None:
            return pending_observation(pod)
        # No metrics pod: bounded like a pod no node takes (a quota or an admission webhook can keep the controller
        # from creating it for ever; a primaryPod that selects none of its pods never finds one), so the attempt
        # fails after `unschedulable_timeout_seconds`.
        if pods:
            message = (f"none of the {len(pods)} pods of {kind} {name} matches spec.trial.primaryPod "
                       f"{self.selector} (fix the selector: it must select the pod that serves metrics and writes "
                       "the result)")
        else:
            controller = f"; is {self.adapter.provider} running?" if self.adapter.provider else ""
            message = (f"{kind} {name} has no pod yet (see its events: a quota or an admission policy may refuse "
                       f"its pods{controller})")
        return Observation(Phase.PENDING, reason=METRICS_UNAVAILABLE, waiting_for="node",
                           since=epoch(obj["metadata"].get("creationTimestamp")), message=message)

    def _succeeded(self, obj: Mapping[str, Any]) -> Observation:
        pod = self.metrics_pod(obj)
        if pod is None:
            return Observation(Phase.SUCCEEDED, result=None,
                               result_source=f"the {self.adapter.kind}'s metrics pod (gone)")
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            # The resource is read from the API at each pass, its pods from the watch-fed cache, which can lag
            # behind: the verdict may arrive before the metrics pod's end (and its termination message, the
            # result). Wait for it; the pod's update wakes the job.
            return Observation(Phase.PENDING, message=f"{self.adapter.kind} {obj['metadata']['name']} succeeded; "
                               f"waiting to see its metrics pod {pod['metadata']['name']} end (its result)")
        message = termination_message(pod)
        if not message.strip() and self.final_result is not None:
            return Observation(Phase.SUCCEEDED, result=self.final_result(pod), result_source="the container's log")
        return Observation(Phase.SUCCEEDED, result=message or None,
                           result_source=f"termination message of pod {pod['metadata']['name']}")

    def _failure_message(self, obj: Mapping[str, Any], failed: Mapping[str, Any]) -> str:
        """The Failed condition's message, with the first failed pod's own reason (its exit code) where known."""
        message = failed.get("message") or ""
        broken = [pod for pod in resource_pods(obj, self.pods) if (pod.get("status") or {}).get("phase") == "Failed"]
        if broken:
            reason, detail = failure_of(broken[0])
            message += f" (pod {broken[0]['metadata']['name']}: {reason}, {detail})"
        return message

    def scrape(self, number: int, attempt: int, cursor: object | None) -> Scraped:
        obj = self._resource(number, attempt)
        pod = self.metrics_pod(obj) if obj is not None else None
        if pod is None:
            raise MetricsError(f"the trial's {self.adapter.kind} has no metrics pod yet" if obj is not None
                               else f"the trial's {self.adapter.kind} is gone")
        return self.read_metrics(number, pod, cursor)

    def stop(self, number: int, attempt: int, grace_seconds: float | None) -> None:
        """Delete the resource and, in the foreground, all its pods (each with its own termination grace period)."""
        obj = self._resource(number, attempt)
        if obj is not None and not self.adapter.finished(obj) and not obj["metadata"].get("deletionTimestamp"):
            self._delete(obj)

    def delete(self, number: int, attempt: int, *, force: bool = False) -> None:
        """Delete the resource; `force` also removes its pods at once (a lost node never confirms their end)."""
        obj = self._resource(number, attempt)
        if obj is None:
            return
        if not obj["metadata"].get("deletionTimestamp"):
            self._delete(obj)
        if force:
            for pod in resource_pods(obj, self.pods):
                self.cluster.delete_pod(self.namespace, pod["metadata"]["name"], grace_seconds=0)

    def release(self, number: int, attempt: int) -> None:
        """A succeeded resource goes once its result is recorded (`delete_succeeded`); a failed one stays for its
        pods' logs until its Trial is deleted."""
        obj = self._resource(number, attempt)
        if (self.delete_succeeded and obj is not None and self.adapter.succeeded_condition(obj) is not None
                and not obj["metadata"].get("deletionTimestamp")):
            self._delete(obj)


def _stuck(pods: Iterable[dict[str, Any]]) -> Observation | None:
    """The first not-yet-running pod that waits for what can last for ever (a node, its image), as its
    Observation."""
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in (None, "Pending") and not pod["metadata"].get("deletionTimestamp"):
            seen = pending_observation(pod)
            if seen.waiting_for is not None:
                return seen
    return None
