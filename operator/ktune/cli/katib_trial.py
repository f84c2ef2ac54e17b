"""Katib trial templates as ktune's `spec.trial`, for `ktune import-katib`.

A Katib trial is any resource its `trialSpec` names; ktune runs a trial as one pod (`spec.trial.template`) or as a
resource of one of the kinds it knows how to run (`spec.trial.resource`: a `batch/v1` Job or a Kubeflow
`kubeflow.org/v1` PyTorchJob, TFJob, MPIJob or XGBoostJob). A v1 Pod, and a Job that is nothing but a pod template
(most of Katib's examples), become `template`: ktune runs that one pod itself, as it runs every one-pod trial. A
Job with anything more (parallelism, Indexed completions, a deadline, ...) and the Kubeflow jobs become
`resource`. Any other kind (MXJob, TrainJob, an Argo Workflow, a Tekton PipelineRun, ...) is refused, naming it
and the kinds that convert. In every container of every replica, `${trialParameters.x}` becomes
`$(KTUNE_PARAM_X)`, as for a pod.

Katib reads three more things from a trial resource; ktune reads them per kind instead:

- `primaryPodLabels` (which pod Katib collects metrics from) becomes `spec.trial.primaryPod: {matchLabels}`, left
  out when it picks the pod ktune's per-kind default picks anyway: Katib's own default for Kubeflow jobs
  (`training.kubeflow.org/job-role: master`, which the training-operator sets on exactly the pod its kind's
  default selects: the master, chief, worker 0 or launcher), ktune's default selector written out, or the
  standalone mpi-operator's `mpi-job-role: launcher` on an MPIJob (the training-operator's launcher pod does
  not carry it; ktune's default is that launcher pod).
- `successCondition` and `failureCondition` are gjson expressions over the resource's status. ktune evaluates
  none: it ends an attempt on the kind's own terminal conditions (Job: `Complete`/`Failed`, Kubeflow jobs:
  `Succeeded`/`Failed`). So an expression is classified by what it tests:
  * Katib's default for the kind, or another test that a condition of the kind's own terminal type is True:
    mapped, with a note.
  * A test that some other condition type is True (`Running`, or a Kubeflow type on a Job): ignoring it would
    end trials on a different condition than the Experiment does, so the conversion is refused, saying what
    ktune reads and what to change. A converted job that succeeds or fails trials differently would be wrong
    without anyone noticing; a refusal costs one edit.
  * Any other expression (gjson over replica statuses, ...) cannot be compared: the job converts, with a
    "cannot be carried over" line saying that ktune ignores it and reads the kind's own conditions, for the
    user to check.
- `primaryContainerName`: that container is moved first in every replica that has it (ktune reads the metrics
  of a pod's first container).
"""

import re
from collections.abc import Callable, Mapping
from typing import Any

from ktune.contract import param_env_name
from ktune.spec.checker import Checker
from ktune.spec.resource_checks import check_resource
from ktune.spec.resource_kinds import (
    JOB_ROLE_LABEL,
    KINDS,
    REPLICA_INDEX_LABEL,
    REPLICA_TYPE_LABEL,
    SUPPORTED_KINDS,
    default_primary_pod,
)

# The condition type ktune ends an attempt on, per outcome (what Katib's defaults for the kind test too).
_JOB_CONDITIONS = {"successCondition": "Complete", "failureCondition": "Failed"}
_KUBEFLOW_CONDITIONS = {"successCondition": "Succeeded", "failureCondition": "Failed"}
_JOB_INTERIM = {"SuccessCriteriaMet": "Complete", "FailureTarget": "Failed"}
"""Job conditions (Kubernetes 1.31+) the Job controller sets just before the terminal one: the same outcome."""
_CONDITION_TEST = re.compile(r'status\.conditions\.#\(type=="(\w+)"\)#?\|#\(status=="True"\)#?')

KATIB_KUBEFLOW_PRIMARY_POD = {JOB_ROLE_LABEL: "master"}
_STANDALONE_MPI_LAUNCHER = {"mpi-job-role": "launcher"}

_TRIAL_PARAMETER = re.compile(r"\$\{trialParameters\.([^}]+)\}")
_TRIAL_META = re.compile(r"\$\{trialSpec\.([^}]+)\}")


class TrialTemplateError(ValueError):
    """The trial template cannot be converted (`ktune.cli.katib.KatibError` says so to the user)."""


def convert_trial(template: Mapping[str, Any], references: Mapping[str, str], notes: list[str],
                  refused: list[str]) -> dict[str, Any]:
    """`spec.trial` for Katib's `spec.trialTemplate`; `references` maps each trialParameters name to the ktune
    parameter it reads."""
    trial_spec = template.get("trialSpec")
    if template.get("configMap") or not trial_spec:
        raise TrialTemplateError("spec.trialTemplate.trialSpec: missing (a template kept in a ConfigMap cannot be "
                                 "converted; inline it first)")
    kind, api_version = trial_spec.get("kind"), trial_spec.get("apiVersion")
    pod = (api_version, kind) == ("v1", "Pod")
    if not pod and (api_version, kind) not in KINDS:
        raise TrialTemplateError(f"spec.trialTemplate.trialSpec: {api_version} {kind} cannot be converted: a ktune "
                                 f"trial is one pod (a v1 Pod) or a resource of one of: {SUPPORTED_KINDS}")
    trial_spec = _rewrite_strings(_copy(trial_spec), references, notes)
    primary = template.get("primaryContainerName")
    if pod or _one_pod_job(trial_spec):
        pod_template = {"spec": trial_spec.get("spec") or {}} if pod else trial_spec["spec"]["template"]
        _primary_container_first([pod_template], primary, notes)
        for key in ("successCondition", "failureCondition", "primaryPodLabels"):
            if template.get(key):
                notes.append(f"trialTemplate.{key} dropped: ktune judges a one-pod trial by its pod's exit code and "
                             "result message")
        _retain(template, notes)
        return {"template": pod_template}
    resource = _resource(trial_spec, str(kind), notes)
    _primary_container_first(_pod_templates(resource), primary, notes)
    _conditions(template, str(kind), notes, refused)
    _retain(template, notes)
    trial: dict[str, Any] = {"resource": resource}
    selector = primary_pod(template.get("primaryPodLabels"), resource, notes)
    if selector is not None:
        trial["primaryPod"] = selector
    return trial


def _one_pod_job(trial_spec: Mapping[str, Any]) -> bool:
    """A `batch/v1` Job that is only a pod template (with at most one pod at once and one completion)."""
    spec = trial_spec.get("spec") or {}
    if trial_spec.get("kind") != "Job" or not isinstance(spec.get("template"), dict):
        return False
    return all(key == "template" or (key in ("parallelism", "completions") and spec[key] == 1) for key in spec)


def _resource(trial_spec: dict[str, Any], kind: str, notes: list[str]) -> dict[str, Any]:
    """The trial resource: apiVersion, kind, the labels and annotations of its metadata, and its spec."""
    spec = trial_spec.get("spec")
    where = "spec.trialTemplate.trialSpec.spec"
    if not isinstance(spec, dict):
        raise TrialTemplateError(f"{where}: missing (the {kind}'s spec)")
    if kind == "Job" and not isinstance(spec.get("template"), dict):
        raise TrialTemplateError(f"{where}.template: missing (the Job's pod template)")
    replica_key = KINDS[(trial_spec["apiVersion"], kind)].replica_key
    if replica_key is not None and not isinstance(spec.get(replica_key), dict):
        raise TrialTemplateError(f"{where}.{replica_key}: missing (the {kind}'s replica specs)")
    resource: dict[str, Any] = {"apiVersion": trial_spec["apiVersion"], "kind": kind}
    metadata = trial_spec.get("metadata") or {}
    kept = {key: metadata[key] for key in ("labels", "annotations") if metadata.get(key)}
    dropped = sorted(set(metadata) - set(kept))
    if dropped:
        notes.append(f"trialSpec.metadata {', '.join(dropped)} dropped: ktune names each attempt's {kind} itself")
    if kept:
        resource["metadata"] = kept
    resource["spec"] = spec
    return resource


def _pod_templates(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resource's pod templates: the Job's, or each replica's (in the order written)."""
    spec = resource["spec"]
    if resource["kind"] == "Job":
        return [spec["template"]]
    replicas = spec[KINDS[(resource["apiVersion"], resource["kind"])].replica_key].values()
    return [replica["template"] for replica in replicas if isinstance(replica, dict)
            and isinstance(replica.get("template"), dict)]


def _primary_container_first(templates: list[dict[str, Any]], primary: str | None, notes: list[str]) -> None:
    moved = False
    for template in templates:
        containers = (template.get("spec") or {}).get("containers") or []
        names = [container.get("name") for container in containers]
        if primary in names and names[0] != primary:
            containers.sort(key=lambda c: c.get("name") != primary)
            moved = True
    if moved:
        notes.append(f"container `{primary}` moved first: ktune reads metrics from the first container")


def _conditions(template: Mapping[str, Any], kind: str, notes: list[str], refused: list[str]) -> None:
    """Map or refuse `successCondition` and `failureCondition`, as the module docstring says."""
    reads = _JOB_CONDITIONS if kind == "Job" else _KUBEFLOW_CONDITIONS
    for key, terminal in reads.items():
        expression = template.get(key)
        if not expression:
            continue
        match = _CONDITION_TEST.fullmatch(re.sub(r"\s+", "", str(expression)))
        tested = match.group(1) if match else None
        if tested is None:
            refused.append(f"trialTemplate.{key} `{expression}`: ktune evaluates no expression; it ends a {kind} "
                           f"trial on the {kind}'s own {terminal} condition: check that this is the same outcome "
                           "for your trials")
        elif (_JOB_INTERIM.get(tested, tested) if kind == "Job" else tested) == terminal:
            notes.append(f"trialTemplate.{key} (condition {tested}) becomes ktune's own reading of a {kind}: its "
                         f"{terminal} condition ends the trial")
        else:
            raise TrialTemplateError(
                f"spec.trialTemplate.{key}: tests condition {tested}, but ktune ends a {kind} trial on the {kind}'s "
                f"own {terminal} condition and cannot read another: remove {key} (Katib's default for {kind} "
                "is ktune's reading) if that is the outcome you mean")


def _retain(template: Mapping[str, Any], notes: list[str]) -> None:
    if template.get("retain"):
        notes.append("trialTemplate.retain dropped: ktune keeps a trial's outcome in its Trial object, not by "
                     "keeping what the trial ran")


def primary_pod(labels: Any, resource: Mapping[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """`spec.trial.primaryPod` for Katib's `primaryPodLabels` (None: ktune's per-kind default picks that pod)."""
    if not labels:
        return None
    labels = {str(key): str(value) for key, value in dict(labels).items()}
    kind = resource["kind"]
    default = default_primary_labels(resource)
    shown = ", ".join(f"{key}: {value}" for key, value in labels.items())
    if labels == default or (kind != "Job" and labels == KATIB_KUBEFLOW_PRIMARY_POD):
        notes.append(f"trialTemplate.primaryPodLabels {{{shown}}} left out: ktune's default primary pod of a {kind} "
                     "is that same pod")
        return None
    if kind == "MPIJob" and labels == _STANDALONE_MPI_LAUNCHER:
        notes.append(f"trialTemplate.primaryPodLabels {{{shown}}} left out: it is the standalone mpi-operator's "
                     "launcher label; the kubeflow.org/v1 MPIJob launcher pod is ktune's default primary pod")
        return None
    replicas = _replicas_of_type(resource, labels.get(REPLICA_TYPE_LABEL))
    if replicas > 1 and REPLICA_INDEX_LABEL not in labels:
        notes.append(f"trialTemplate.primaryPodLabels {{{shown}}} select {replicas} pods: Katib collects metrics "
                     "from each, ktune reads one (the newest it selects); add "
                     f"{REPLICA_INDEX_LABEL}: \"0\" to spec.trial.primaryPod.matchLabels to read the first")
    return {"matchLabels": labels}


def _replicas_of_type(resource: Mapping[str, Any], replica_type: str | None) -> int:
    """How many pods of a Kubeflow job's replica type run at once (0: not a Kubeflow replica type)."""
    replica_key = KINDS[(resource["apiVersion"], resource["kind"])].replica_key
    if replica_key is None or replica_type is None:
        return 0
    specs = resource["spec"][replica_key]
    return sum(int(spec.get("replicas", 1)) for name, spec in specs.items()
               if str(name).lower() == replica_type and isinstance(spec, dict))


def default_primary_labels(resource: Mapping[str, Any]) -> dict[str, str] | None:
    """ktune's default primary pod of a trial resource as labels (None: a NonIndexed Job's first pod, or a
    resource ktune's checks refuse, whose default does not matter)."""
    filled = check_resource(Checker(), resource)
    selector = default_primary_pod(filled) if filled is not None else None
    return dict(selector["matchLabels"]) if selector is not None else None


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _rewrite_strings(node: Any, references: Mapping[str, str], notes: list[str]) -> Any:
    """Rewrite `${trialParameters.x}` to `$(KTUNE_PARAM_X)` in every string under `node`, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _rewrite_strings(value, references, notes)
        return node
    if isinstance(node, list):
        return [_rewrite_strings(v, references, notes) for v in node]
    if not isinstance(node, str):
        return node
    return _TRIAL_META.sub(_meta_reference(notes), _TRIAL_PARAMETER.sub(_parameter_reference(references), node))


def _parameter_reference(references: Mapping[str, str]) -> Callable[[re.Match[str]], str]:
    def parameter(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in references:
            raise TrialTemplateError(f"trial template refers to ${{trialParameters.{name}}}, which trialParameters "
                                     "does not define")
        return f"$({param_env_name(references[name])})"
    return parameter


def _meta_reference(notes: list[str]) -> Callable[[re.Match[str]], str]:
    def meta(match: re.Match[str]) -> str:
        notes.append(f"${{trialSpec.{match.group(1)}}} has no ktune equivalent: use $(KTUNE_TRIAL_NUMBER) or "
                     "$(KTUNE_TUNINGJOB)")
        return match.group(0)
    return meta
