"""Trials that wait in a Kueue queue (`spec.trial.queueName`): the resource is created suspended with Kueue's
queue label, and Kueue unsuspends it once the queue's ClusterQueue has quota for it.

Per kind, where the suspend switch is: a `batch/v1` Job's `spec.suspend`, a Kubeflow training job's
`spec.runPolicy.suspend`. A queued resource that is suspended waits for admission: at first, and again after
Kueue preempted it (it suspends an admitted resource; the Job controller then deletes its pods). Either way the
attempt is Pending with reason `QueueAdmission` and `waiting_for="queue"`: never timed out like an unschedulable
pod (a queue's wait is the cluster's policy, not a fault), and its time is not counted in the hour budgets.
"""

import copy
from collections.abc import Mapping
from typing import Any

from ktune.trials.backend import Observation, Phase

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
QUEUE_ADMISSION = "QueueAdmission"


def _suspend_holder(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The path (below the object) of the mapping that holds the kind's `suspend` field: a Kubeflow job's spec has
    replica specs (`pytorchReplicaSpecs`, ...), a Job's has none. Read from the spec because a LIST's items carry
    no `kind`."""
    spec = obj.get("spec") or {}
    kubeflow = any(isinstance(key, str) and key.endswith("ReplicaSpecs") for key in spec)
    return ("spec", "runPolicy") if kubeflow else ("spec",)


def queued_manifest(manifest: Mapping[str, Any], queue_name: str | None) -> dict[str, Any]:
    """`manifest` (a trial resource ready to create) suspended and labelled for Kueue's LocalQueue `queue_name`;
    a copy as it is when `queue_name` is None."""
    queued = copy.deepcopy(dict(manifest))
    if queue_name is None:
        return queued
    metadata = queued.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), QUEUE_LABEL: queue_name}
    holder: dict[str, Any] = queued
    for key in _suspend_holder(queued):
        holder = holder.setdefault(key, {})
    holder["suspend"] = True
    return queued


def suspended(obj: Mapping[str, Any]) -> bool:
    """Whether the resource (as read from the API) is suspended."""
    holder: Any = obj
    for key in _suspend_holder(obj):
        holder = holder.get(key) if isinstance(holder, Mapping) else None
    return isinstance(holder, Mapping) and holder.get("suspend") is True


def admission_wait(obj: Mapping[str, Any], queue_name: str | None) -> Observation | None:
    """Pending (QueueAdmission) while a queued trial resource is suspended; None when it is not queued or runs."""
    if queue_name is None or not suspended(obj):
        return None
    metadata = obj["metadata"]
    kind = "Job" if _suspend_holder(obj) == ("spec",) else "training job"
    return Observation(Phase.PENDING, reason=QUEUE_ADMISSION, waiting_for="queue",
                       message=f"{kind} {metadata['name']} waits for Kueue to admit it from LocalQueue "
                               f"{queue_name} (suspended until its ClusterQueue has quota; `kubectl get workloads "
                               f"-n {metadata.get('namespace')}` says why)")
