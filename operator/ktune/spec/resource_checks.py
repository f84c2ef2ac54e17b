"""Checks of `spec.trial.resource`: a `batch/v1` Job, or a Kubeflow `kubeflow.org/v1` PyTorchJob, TFJob, MPIJob
or XGBoostJob, with the defaults ktune fills.

Each pod template (the Job's, each replica's) is checked like `spec.trial.template`. The Kubeflow rules are the
training-operator v1.8.1's own (its webhooks: replica types per kind, one Master, the container named after the
framework), so a job `ktune validate` accepts is one the training-operator runs. Replica types are matched
without case and written back in the operator's spelling (`master` is `Master`), as its defaulting does.

Defaults: a Job's `backoffLimit` and a replica's `restartPolicy` make a failed pod fail the whole resource, as
ktune's `retries` re-create the whole resource (every pod of a distributed run restarts together).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ktune.spec.checker import Checker, is_int, show
from ktune.spec.model import JOB_COMPLETION_MODES
from ktune.spec.pod_template import check_containers
from ktune.spec.resource_kinds import KINDS, SUPPORTED_KINDS, ResourceKind, replica_type_name

PATH = "spec.trial.resource"
_RESOURCE_FIELDS = ("apiVersion", "kind", "metadata", "spec")
_REPLICA_FIELDS = ("replicas", "restartPolicy", "template")
REPLICA_RESTART_POLICIES = ("Never", "OnFailure", "Always", "ExitCode")
JOB_BACKOFF_LIMIT = 0
"""A trial Job fails at its first failed pod: ktune's `retries` re-create the whole Job."""
REPLICA_RESTART_POLICY = "Never"
"""A Kubeflow replica's pods are not restarted in place: ktune's `retries` re-create the whole job."""
_TEMPLATE_HINT = "a PodTemplateSpec with at least one container"


def check_resource(check: Checker, raw: Any) -> dict[str, Any] | None:
    """`spec.trial.resource`, a supported kind, with its defaults filled."""
    resource = check.mapping(raw, PATH)
    if resource is None:
        return None
    check.known_fields(resource, PATH, _RESOURCE_FIELDS)
    api_version, kind_name = resource.get("apiVersion"), resource.get("kind")
    kind = KINDS.get((api_version, kind_name)) if isinstance(api_version, str) and isinstance(kind_name, str) else None
    if kind is None:
        check.problem(f"{PATH}.kind", f"unsupported kind {show(api_version)} {show(kind_name)}: a trial resource is "
                                      f"one of: {SUPPORTED_KINDS} (one pod per trial: use spec.trial.template)")
        return None
    if "metadata" in resource and check.mapping(resource["metadata"], f"{PATH}.metadata") is None:
        return None
    spec = check.mapping(resource.get("spec"), f"{PATH}.spec")
    if spec is None:
        return None
    filled = _check_job_spec(check, spec) if kind.replica_key is None else _check_kubeflow_spec(check, kind, spec)
    if filled is None or any(key not in _RESOURCE_FIELDS for key in resource):
        return None
    return {**copy.deepcopy(dict(resource)), "spec": filled}


def _check_job_spec(check: Checker, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    path = f"{PATH}.spec"
    ok = True
    for key in ("parallelism", "completions"):
        if key in spec and not check.integer(spec[key], f"{path}.{key}", 1):
            ok = False
    mode = spec.get("completionMode", "NonIndexed")
    if not check.enum(mode, f"{path}.completionMode", JOB_COMPLETION_MODES):
        ok = False
    elif mode == "Indexed" and "completions" not in spec:
        check.problem(f"{path}.completions", "is required with completionMode Indexed (one pod per index, e.g. "
                                             "completions and parallelism both the number of nodes)")
        ok = False
    if "backoffLimit" in spec and not check.integer(spec["backoffLimit"], f"{path}.backoffLimit", 0):
        ok = False
    if "template" not in spec:
        check.problem(f"{path}.template", f"is required: the Job's pod template ({_TEMPLATE_HINT})")
        return None
    template = check.mapping(spec["template"], f"{path}.template")
    if template is None or not check_containers(check, template, f"{path}.template") or not ok:
        return None
    return {"parallelism": 1, "backoffLimit": JOB_BACKOFF_LIMIT, **copy.deepcopy(dict(spec))}


def _check_kubeflow_spec(check: Checker, kind: ResourceKind, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Kubeflow job's spec: its replica specs checked and filled, replica types in the operator's spelling."""
    assert kind.replica_key is not None
    path, count = f"{PATH}.spec", len(check.problems)
    check.known_fields(spec, path, kind.spec_fields, f"of a {kind.kind}")
    where = f"{path}.{kind.replica_key}"
    types = ", ".join(kind.replica_types)
    if kind.replica_key not in spec:
        check.problem(where, f"is required: the {kind.kind}'s replica specs, a mapping of replica type ({types}) "
                             f"to {{replicas, template}}")
        return None
    replicas = check.mapping(spec[kind.replica_key], where)
    if replicas is None:
        return None
    if not replicas:
        check.problem(where, f"must have at least one replica type ({types}) (got an empty mapping)")
        return None
    filled: dict[str, dict[str, Any]] = {}
    for key, raw in replicas.items():
        name = replica_type_name(kind, key) if isinstance(key, str) else None
        if name is None:
            check.problem(f"{where}.{key}", f"unknown replica type of a {kind.kind}: one of {types}")
        elif name in filled:
            check.problem(f"{where}.{key}", f"replica type {name} is given twice (replica types are matched "
                                            "without case)")
        else:
            replica = _check_replica(check, kind, name, raw, f"{where}.{key}")
            if replica is not None:
                filled[name] = replica
    given = {replica_type_name(kind, key) for key in replicas if isinstance(key, str)}
    for name in kind.required:
        if name not in given:
            check.problem(f"{where}.{name}", f"is required: every {kind.kind} has a {name} replica")
    if sum(name in filled for name in kind.single) > 1:
        check.problem(where, f"at most one of {', '.join(kind.single)} (the {kind.kind}'s rank-0 replica)")
    if len(check.problems) != count:
        return None
    ordered = {name: filled[name] for name in kind.replica_types if name in filled}
    return {**copy.deepcopy(dict(spec)), kind.replica_key: ordered}


def _check_replica(check: Checker, kind: ResourceKind, name: str, raw: Any, path: str) -> dict[str, Any] | None:
    replica = check.mapping(raw, path)
    if replica is None:
        return None
    count = len(check.problems)
    check.known_fields(replica, path, _REPLICA_FIELDS)
    filled = {"replicas": 1, "restartPolicy": REPLICA_RESTART_POLICY, **copy.deepcopy(dict(replica))}
    replicas = filled["replicas"]
    if is_int(replicas) and replicas == 0:
        check.problem(f"{path}.replicas", f"must be >= 1 (got 0): leave {name} out of {kind.replica_key} "
                                          "rather than run no pod of it")
    elif check.integer(replicas, f"{path}.replicas", 1) and name in kind.single and replicas != 1:
        check.problem(f"{path}.replicas", f"must be 1: a {kind.kind} has one {name} (got {replicas}); "
                                          "more pods go in Worker")
    check.enum(filled["restartPolicy"], f"{path}.restartPolicy", REPLICA_RESTART_POLICIES)
    if "template" not in replica:
        check.problem(f"{path}.template", f"is required: the {name} replica's pod template ({_TEMPLATE_HINT})")
    else:
        template = check.mapping(replica["template"], f"{path}.template")
        if template is not None:
            check_containers(check, template, f"{path}.template", kind.container)
    return filled if len(check.problems) == count else None
