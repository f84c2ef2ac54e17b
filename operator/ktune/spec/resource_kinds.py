"""The kinds a trial resource (`spec.trial.resource`) may be, and where their pod templates live.

One table for everything that differs per kind and is known before anything runs: the replica-spec key of a
Kubeflow job (`spec.pytorchReplicaSpecs`, ...), its replica types in rank order, the container its
training-operator requires, the default `primaryPod` (the pod that serves metrics and writes the result), and
whether `ktune run` can run it. Label keys and values are those of Kubeflow's training-operator v1.8.1
(`pkg/apis/kubeflow.org/v1/common_types.go`: the controllers label each pod with its lower-cased replica type
and its index) and of Kubernetes' Indexed Job (`batch.kubernetes.io/job-completion-index`).

`pod_templates` lists a filled resource's pod templates with how many pods run each;
`map_pod_templates` rewrites every one of them (the operator injects the contract's variables that way, into
every container of every replica).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

JOB = ("batch/v1", "Job")
KUBEFLOW_API_VERSION = "kubeflow.org/v1"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
"""The training-operator's label on a PyTorchJob's Master pod (Katib's default metrics pod selector)."""


@dataclass(frozen=True)
class ResourceKind:
    api_version: str
    kind: str
    plural: str
    """The API's resource name (`kubectl get <plural>`), to name an API the cluster does not serve."""
    replica_key: str | None
    """The spec key of a Kubeflow job's replica specs; None for a Job (one `spec.template`)."""
    replica_types: tuple[str, ...] = ()
    """A Kubeflow job's replica types, in rank order (the first one present holds rank 0)."""
    container: str | None = None
    """The container name the training-operator requires in every replica ("pytorch"); its trainer."""
    single: tuple[str, ...] = ()
    """Replica types that must have exactly one replica (a PyTorchJob's Master)."""
    required: tuple[str, ...] = ()
    """Replica types the job must have (an MPIJob's Launcher)."""
    runs_locally: bool = False
    """`ktune run` can run it as local processes."""
    spec_fields: tuple[str, ...] = ()
    """A Kubeflow job's spec fields (v1.8.1's Go types): any other is a typo the API server would drop."""

    @property
    def name(self) -> str:
        return f"{self.api_version} {self.kind}"


_KINDS = (
    ResourceKind(*JOB, plural="jobs", replica_key=None, runs_locally=True),
    ResourceKind(KUBEFLOW_API_VERSION, "PyTorchJob", "pytorchjobs", "pytorchReplicaSpecs", ("Master", "Worker"),
                 container="pytorch", single=("Master",), runs_locally=True,
                 spec_fields=("pytorchReplicaSpecs", "runPolicy", "elasticPolicy", "nprocPerNode")),
    ResourceKind(KUBEFLOW_API_VERSION, "TFJob", "tfjobs", "tfReplicaSpecs",
                 ("Chief", "Master", "Worker", "PS", "Evaluator"), container="tensorflow", single=("Chief", "Master"),
                 spec_fields=("tfReplicaSpecs", "runPolicy", "successPolicy", "enableDynamicWorker")),
    ResourceKind(KUBEFLOW_API_VERSION, "MPIJob", "mpijobs", "mpiReplicaSpecs", ("Launcher", "Worker"),
                 single=("Launcher",), required=("Launcher",),
                 spec_fields=("mpiReplicaSpecs", "runPolicy", "slotsPerWorker", "cleanPodPolicy", "mainContainer")),
    ResourceKind(KUBEFLOW_API_VERSION, "XGBoostJob", "xgboostjobs", "xgbReplicaSpecs", ("Master", "Worker"),
                 container="xgboost", single=("Master",), required=("Master",),
                 spec_fields=("xgbReplicaSpecs", "runPolicy")),
)
KINDS: dict[tuple[str, str], ResourceKind] = {(kind.api_version, kind.kind): kind for kind in _KINDS}
RESOURCE_KINDS = tuple(KINDS)
SUPPORTED_KINDS = ", ".join(kind.name for kind in _KINDS)


class PodTemplate(NamedTuple):
    """One pod template of a resource: `path` from the resource's root (`spec.template`,
    `spec.pytorchReplicaSpecs.Master.template`), the template, and how many pods run it at once."""

    path: str
    template: dict[str, Any]
    replicas: int


def resource_kind(manifest: Mapping[str, Any]) -> ResourceKind:
    """The kind of a checked resource; KeyError for one `ktune.spec` would have refused."""
    return KINDS[(manifest["apiVersion"], manifest["kind"])]


def replica_type_name(kind: ResourceKind, key: str) -> str | None:
    """The replica type a replica-spec key names, matched without case as the training-operator does
    (`master` is `Master`); None for a type the kind does not have."""
    return next((name for name in kind.replica_types if name.lower() == key.lower()), None)


def job_pods(spec: Mapping[str, Any]) -> int:
    """Pods a filled Job spec runs at once: its parallelism, at most its completions."""
    parallelism = int(spec.get("parallelism", 1))
    return min(parallelism, int(spec.get("completions") or parallelism))


def replica_specs(manifest: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """A filled Kubeflow job's (replica type, replica spec) in rank order; [] for a Job."""
    kind = resource_kind(manifest)
    if kind.replica_key is None:
        return []
    specs = manifest["spec"][kind.replica_key]
    return [(name, specs[name]) for name in kind.replica_types if name in specs]


def pod_templates(manifest: Mapping[str, Any]) -> list[PodTemplate]:
    """Every pod template of a filled resource, the primary replica's first for a Kubeflow job (rank order)."""
    kind = resource_kind(manifest)
    spec = manifest["spec"]
    if kind.replica_key is None:
        return [PodTemplate("spec.template", spec["template"], job_pods(spec))]
    return [PodTemplate(f"spec.{kind.replica_key}.{name}.template", replica["template"], int(replica["replicas"]))
            for name, replica in replica_specs(manifest)]


def map_pod_templates(manifest: Mapping[str, Any],
                      fn: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A copy of a filled resource with each of its pod templates replaced by `fn(template)`."""
    mapped = copy.deepcopy(dict(manifest))
    kind = resource_kind(mapped)
    spec = mapped["spec"]
    if kind.replica_key is None:
        spec["template"] = fn(spec["template"])
    else:
        for replica in spec[kind.replica_key].values():
            replica["template"] = fn(replica["template"])
    return mapped


def default_primary_pod(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The selector of a filled resource's metrics pod when `primaryPod` is not given; None for a NonIndexed Job
    (its first pod)."""
    kind = resource_kind(manifest)
    spec = manifest["spec"]
    if kind.replica_key is None:
        if spec.get("completionMode") == "Indexed":
            return {"matchLabels": {COMPLETION_INDEX_LABEL: "0"}}
        return None
    first = replica_specs(manifest)[0][0]
    labels = {REPLICA_TYPE_LABEL: first.lower()}
    if first == "Worker" or int(spec[kind.replica_key][first]["replicas"]) > 1:
        labels[REPLICA_INDEX_LABEL] = "0"
    return {"matchLabels": labels}


def primary_template(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The pod template of a filled resource's rank-0 pod (the primary replica's)."""
    return pod_templates(manifest)[0].template


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a checked LabelSelector selects a pod with `labels` (Kubernetes' rules: every term must hold)."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        holds = {"In": present and labels.get(key) in values, "NotIn": not present or labels[key] not in values,
                 "Exists": present, "DoesNotExist": not present}[operator]
        if not holds:
            return False
    return True
