"""A trial resource (`spec.trial.resource`) under `ktune run`: its pods as processes on this machine, all at once.

A Job's pods, or a PyTorchJob's Master (rank 0) and then its Workers (ranks 1..), each become one process running
its pod template's trainer container. Each process gets what its pod would get on a cluster and what torchrun gives
its workers (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT one free port for
the attempt): JOB_COMPLETION_INDEX for an Indexed Job's pod; for a PyTorchJob's, what its training-operator sets
(PET_NODE_RANK, PET_NNODES, PET_MASTER_ADDR, PET_MASTER_PORT, PET_NPROC_PER_NODE, PYTHONUNBUFFERED). So a trainer
written for `torchrun`, an Indexed Job or a PyTorchJob runs unchanged. The metrics process is the one whose pod
`primaryPod` (or the kind's default) selects, judged by the labels its pod would have on a cluster (its template's,
the completion index, the replica type and index): rank 0 unless primaryPod says otherwise.

Refused, naming the field: a Job that runs its completions in waves (completions above parallelism), a
PyTorchJob without a Master or with an elasticPolicy (its pods meet through a rendezvous backend, not a master),
and the kinds no local process can stand in for (TFJob, MPIJob, XGBoostJob: their own cluster setup).
"""

from dataclasses import dataclass
from typing import Any

from ktune.local.processes import TEMPLATE_PATH, LocalTemplateError
from ktune.spec import TrialSpec
from ktune.spec.resource_kinds import (
    COMPLETION_INDEX_LABEL,
    JOB_ROLE_LABEL,
    REPLICA_INDEX_LABEL,
    REPLICA_TYPE_LABEL,
    job_pods,
    replica_specs,
    resource_kind,
    selector_matches,
)
from ktune.spec.selector import selector_text

RESOURCE_PATH = "spec.trial.resource"
LOCAL_MASTER_ADDR = "127.0.0.1"


@dataclass(frozen=True)
class LocalPod:
    """One pod of an attempt as `ktune run` runs it: the process of rank `rank`."""

    rank: int
    path: str
    """Its pod template, from the TuningJob's root."""
    template: dict[str, Any]
    container: str | None = None
    """The trainer container's name (a Kubeflow kind's required one); None: the first container."""
    labels: tuple[tuple[str, str], ...] = ()
    """The labels its pod would have on a cluster, for `primaryPod`."""


def local_pods(trial: TrialSpec) -> list[LocalPod]:
    """The processes one attempt of the trial runs, in rank order (one for a pod trial); LocalTemplateError when
    `ktune run` cannot run the trial's resource."""
    resource = trial.resource
    if resource is None:
        return [LocalPod(0, TEMPLATE_PATH, trial.template)]
    kind = resource_kind(resource.manifest)
    if not kind.runs_locally:
        raise LocalTemplateError([f"{RESOURCE_PATH}.kind: `ktune run` cannot run a {kind.name} trial as local "
                                  "processes (its pods need the training-operator's own setup): run it on a "
                                  "cluster with Kubeflow's training-operator, or make the trial a batch/v1 Job or "
                                  "a PyTorchJob"])
    spec = resource.manifest["spec"]
    if kind.replica_key is None:
        _check_job(spec)
    else:
        _check_pytorchjob(spec)
    if kind.replica_key is None:
        path, template = f"{RESOURCE_PATH}.spec.template", spec["template"]
        return [LocalPod(rank, path, template, labels=_labels(template, {COMPLETION_INDEX_LABEL: str(rank)}
                                                              if resource.indexed else {}))
                for rank in range(job_pods(spec))]
    pods: list[LocalPod] = []
    for name, replica in replica_specs(resource.manifest):
        path = f"{RESOURCE_PATH}.spec.{kind.replica_key}.{name}.template"
        for index in range(int(replica["replicas"])):
            labels = {REPLICA_TYPE_LABEL: name.lower(), REPLICA_INDEX_LABEL: str(index)}
            if name == "Master":
                labels[JOB_ROLE_LABEL] = "master"
            pods.append(LocalPod(len(pods), path, replica["template"], kind.container,
                                 _labels(replica["template"], labels)))
    return pods


def _labels(template: dict[str, Any], given: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The template's own labels and what the controller adds (the controller's win)."""
    own = (template.get("metadata") or {}).get("labels") or {}
    return tuple({**{str(key): str(value) for key, value in own.items()}, **given}.items())


def primary_rank(trial: TrialSpec, pods: list[LocalPod]) -> int:
    """The rank whose process is the metrics process: the first pod the trial's primary selector selects (rank 0
    without one); LocalTemplateError when it selects none, as the attempt would fail on a cluster."""
    selector = None if trial.resource is None else trial.resource.primary_pod
    if selector is None:
        return 0
    for pod in pods:
        if selector_matches(selector, dict(pod.labels)):
            return pod.rank
    raise LocalTemplateError([f"spec.trial.primaryPod: {selector_text(selector)} selects none of the trial's "
                              f"{len(pods)} pods (rank 0's labels: {dict(pods[0].labels)}), so no pod would serve "
                              "the metrics and the result: select one of them, or leave primaryPod out for the "
                              "kind's default"])


def _check_job(spec: dict[str, Any]) -> None:
    completions = spec.get("completions")
    if completions is not None and completions != spec["parallelism"]:
        raise LocalTemplateError([
            f"{RESOURCE_PATH}.spec.completions: `ktune run` runs every pod of a Job trial at once, as local "
            f"processes: set completions equal to parallelism (got completions {completions}, parallelism "
            f"{spec['parallelism']}), or run the job on a cluster"])


def _check_pytorchjob(spec: dict[str, Any]) -> None:
    problems = []
    if "Master" not in spec["pytorchReplicaSpecs"]:
        problems.append(f"{RESOURCE_PATH}.spec.pytorchReplicaSpecs.Master: `ktune run` starts rank 0 from the "
                        "Master replica: add one (replicas 1), or run the job on a cluster")
    if spec.get("elasticPolicy") is not None:
        problems.append(f"{RESOURCE_PATH}.spec.elasticPolicy: `ktune run` has no rendezvous backend for elastic "
                        "training: remove elasticPolicy (ranks meet at the Master), or run the job on a cluster")
    if problems:
        raise LocalTemplateError(problems)


def distributed_env(trial: TrialSpec, rank: int, master_port: int) -> dict[str, str]:
    """The variables of process `rank` of a resource trial (none for a pod trial)."""
    resource = trial.resource
    if resource is None:
        return {}
    spec = resource.manifest["spec"]
    kind = resource_kind(resource.manifest)
    if kind.replica_key is None:
        world = job_pods(spec)
        variables = _torchrun_env(world, rank, master_port)
        if resource.indexed:
            variables["JOB_COMPLETION_INDEX"] = str(rank)
        return variables
    nodes = sum(int(replica["replicas"]) for replica in spec[kind.replica_key].values())
    nproc = str(spec.get("nprocPerNode", ""))
    world = nodes * (int(nproc) if nproc.isdigit() else 1)  # the training-operator's WORLD_SIZE: "auto" counts 1
    variables = {**_torchrun_env(world, rank, master_port), "PET_NODE_RANK": str(rank), "PET_NNODES": str(nodes),
                 "PET_MASTER_ADDR": LOCAL_MASTER_ADDR, "PET_MASTER_PORT": str(master_port), "PYTHONUNBUFFERED": "1"}
    if "nprocPerNode" in spec:
        variables["PET_NPROC_PER_NODE"] = str(spec["nprocPerNode"])
    return variables


def _torchrun_env(world: int, rank: int, master_port: int) -> dict[str, str]:
    return {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": LOCAL_MASTER_ADDR, "MASTER_PORT": str(master_port)}
