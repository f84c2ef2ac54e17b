"""How the operator reads and stops each kind of trial resource (`spec.trial.resource`), one adapter per kind.

What a kind means before it runs (its replica specs, its pod templates, its default primary pod) is the spec's
(`ktune.spec.resource_kinds`); what its controller writes while it runs is here:

- where its API is (`ApiResource`: group version and plural), and what serves it when a cluster does not;
- its verdict: a `batch/v1` Job's `Complete` and `Failed` conditions (kube-controller-manager's Job
  controller); a Kubeflow job's `Succeeded` and `Failed` (the training-operator; `Restarting`, `Running` and
  `Created` all mean it still runs). Only a condition with status "True" counts;
- which pods are an attempt's: those whose controller (ownerReference) is the resource, by uid;
- which of them is the metrics pod: the newest pod `primaryPod` selects (a replaced pod's successor), or the
  oldest pod of a NonIndexed Job, which has no selector.

Every kind is stopped the same way: deleted with foreground propagation (`Cluster.delete_trial_resource`).
"""

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ktune.operator.cluster import ApiResource, Cluster
from ktune.operator.pods import controller_uid
from ktune.spec.resource_kinds import KINDS, selector_matches

FAILED = "Failed"


@dataclass(frozen=True)
class ResourceAdapter:
    """What the operator reads of one kind of trial resource while it runs."""

    api: ApiResource
    kind: str
    succeeded: str
    """The condition type its controller sets True when it succeeded."""
    provider: str | None = None
    """What serves its API where a cluster does not (None: every cluster serves it)."""

    @property
    def name(self) -> str:
        return f"{self.api.api_version} {self.kind}"

    def condition(self, obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
        """The object's condition of type `type_` when it is True."""
        for entry in (obj.get("status") or {}).get("conditions") or []:
            if entry.get("type") == type_ and entry.get("status") == "True":
                return entry
        return None

    def succeeded_condition(self, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.condition(obj, self.succeeded)

    def failed_condition(self, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.condition(obj, FAILED)

    def finished(self, obj: Mapping[str, Any]) -> bool:
        """Whether its controller gave the verdict: succeeded or failed."""
        return self.succeeded_condition(obj) is not None or self.failed_condition(obj) is not None

    def missing_api(self, cluster: Cluster) -> str | None:
        """Why the cluster cannot run this kind (its API is not served, with what serves it), or None."""
        if self.provider is None or self.api.plural in cluster.served_resources(self.api.api_version):
            return None
        return (f"spec.trial.resource: {self.api.api_version} {self.api.plural} is not served by this cluster: "
                f"install {self.provider} (its CRDs serve {self.name}s), then edit or re-create this TuningJob")


_JOB = ResourceAdapter(ApiResource("batch/v1", "jobs"), "Job", "Complete")
ADAPTERS: dict[tuple[str, str], ResourceAdapter] = {
    (_JOB.api.api_version, _JOB.kind): _JOB,
    **{key: ResourceAdapter(ApiResource(kind.api_version, kind.plural), kind.kind, "Succeeded",
                            provider="Kubeflow's training-operator")
       for key, kind in KINDS.items() if key != (_JOB.api.api_version, _JOB.kind)},
}
"""(apiVersion, kind) -> its adapter, for every kind `spec.trial.resource` may be."""


def adapter_for(api_version: str, kind: str) -> ResourceAdapter:
    """The adapter of a kind the spec accepted (KeyError for any other)."""
    return ADAPTERS[(api_version, kind)]


def controlled_by_trial_resource(pod: Mapping[str, Any]) -> bool:
    """Whether a pod's controller is a trial resource (a Job's or a PyTorchJob's pod, not a trial pod of ktune's
    own, whose controller is its Trial)."""
    for reference in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller"):
            return (reference.get("apiVersion"), reference.get("kind")) in ADAPTERS
    return False


def resource_milestone(obj: Mapping[str, Any]) -> Hashable:
    """What of a trial resource wakes its TuningJob when it changes: its True conditions, and whether it is being
    deleted (not each change of its pod counts)."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    true = sorted(entry.get("type") or "" for entry in conditions if entry.get("status") == "True")
    return tuple(true), bool((obj.get("metadata") or {}).get("deletionTimestamp"))


FIRST_RESOURCE_MILESTONE = resource_milestone({})


def resource_pods(obj: Mapping[str, Any], pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods the resource controls, oldest first."""
    uid = obj["metadata"].get("uid")
    owned = [pod for pod in pods if uid is not None and controller_uid(pod) == uid]
    return sorted(owned, key=lambda pod: (pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"]))


def metrics_pod(pods: list[dict[str, Any]], selector: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Of an attempt's pods (oldest first), the one that serves metrics and writes the result: the newest one
    `selector` selects (should the controller have replaced it), or the oldest one when there is no selector."""
    if selector is None:
        return pods[0] if pods else None
    chosen = [pod for pod in pods if selector_matches(selector, pod["metadata"].get("labels") or {})]
    return chosen[-1] if chosen else None
