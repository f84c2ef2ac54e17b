"""`ktune status` and `ktune export`: a TuningJob's trials read back from the cluster.

Both read the Trial objects (the durable record: those the job controls, by owner uid) and the job's spec;
neither needs the operator.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from ktune.algorithms import load_tuningjob
from ktune.engine import TrialRecord, TrialState, parameter_distribution
from ktune.operator.cluster import JOBS, ApiError, KubeCluster
from ktune.operator.ownership import Ownership
from ktune.operator.status import TERMINAL_PHASES
from ktune.operator.trials import PENDING, AttemptShape, record_from_trial, recorded_attempt
from ktune.spec import JobSpec, SpecError

OPTUNA_STATES = {
    TrialState.SUCCEEDED: optuna.trial.TrialState.COMPLETE,
    TrialState.PRUNED: optuna.trial.TrialState.PRUNED,
    TrialState.FAILED: optuna.trial.TrialState.FAIL,
}


class InspectionError(Exception):
    """The job cannot be read (missing, forbidden, invalid): the message says which and what to do."""


@dataclass(frozen=True)
class ClusterStudy:
    """One TuningJob as the cluster holds it: its object, its spec and its trials in number order."""

    job: dict[str, Any]
    spec: JobSpec
    records: list[TrialRecord]
    shapes: dict[int, AttemptShape] = field(default_factory=dict)
    """Trial number -> what its attempts run, as its Trial records it."""
    waiting: dict[int, str] = field(default_factory=dict)
    """Trial number -> why it is Pending (QueueAdmission), for a running trial whose attempt waits in a queue."""


def read_study(cluster: KubeCluster, namespace: str, name: str) -> ClusterStudy:
    """The job and its trials, or InspectionError naming what went wrong."""
    try:
        job = cluster.request("GET", f"{JOBS.format(ns=namespace)}/{name}")
        trials = cluster.list_trials(namespace, name)
    except ApiError as error:
        if error.status == 404:
            raise InspectionError(f"TuningJob {namespace}/{name} not found (check the name and -n NAMESPACE)") from None
        raise InspectionError(f"cannot read TuningJob {namespace}/{name}: {error}") from None
    try:
        spec = load_tuningjob({key: job[key] for key in ("apiVersion", "kind", "metadata", "spec")}).spec
    except SpecError as error:
        raise InspectionError(f"TuningJob {namespace}/{name} is invalid:\n{error}") from None
    owned = Ownership().trials(job, trials)  # not a stranger carrying the job's labels (an earlier job's, say)
    records = sorted((record_from_trial(trial) for trial in owned), key=lambda record: record.number)
    shapes = {int(trial["spec"]["number"]): recorded_attempt(trial)[1] for trial in owned
              if (trial.get("status") or {}).get("kind")}  # not yet written: what the spec runs
    waiting = {int(trial["spec"]["number"]): trial["status"].get("reason") or "" for trial in owned
               if (trial.get("status") or {}).get("state") == PENDING}  # records read these as Running
    return ClusterStudy(job=job, spec=spec, records=records, shapes=shapes, waiting=waiting)


def trials_table(spec: JobSpec, records: Sequence[TrialRecord], shapes: Mapping[int, AttemptShape],
                 waiting: Mapping[int, str] | None = None) -> str:
    """One row per trial: number, state, what each attempt runs (kind, pods), objective values, params, reason.
    A trial without a recorded shape (not yet written) shows what the job's spec runs; one in `waiting` (number ->
    reason) is Pending."""
    waiting = waiting or {}
    objectives = [objective.metric for objective in spec.objectives]
    header = ["TRIAL", "STATE", "KIND", "PODS", *[name.upper() for name in objectives], "PARAMS", "REASON"]
    rows = [header]
    default = AttemptShape.of(spec.trial)
    for record in records:
        values = record.values or []
        shape = shapes.get(record.number, default)
        rows.append([
            str(record.number),
            PENDING if record.number in waiting else str(record.state),
            shape.kind,
            str(shape.pods),
            *[_number(values[i]) if i < len(values) else "" for i in range(len(objectives))],
            json.dumps(record.params, sort_keys=True),
            waiting.get(record.number) or record.reason or "",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def status_report(study: ClusterStudy) -> str:
    """`ktune status`: the job's phase and message, then the trials table."""
    status = study.job.get("status") or {}
    metadata = study.job["metadata"]
    lines = [
        f"TuningJob {metadata['namespace']}/{metadata['name']}: {status.get('phase', 'Pending')}"
        + (f" ({status['trials']} trials)" if status.get("trials") else ""),
    ]
    if status.get("message"):
        lines.append(status["message"])
    best = status.get("bestTrial")
    if best:
        lines.append(f"Best: {best.get('name')} value={_number(best.get('value'))} "
                     f"params={json.dumps(best.get('params'), sort_keys=True)}")
    if status.get("importedTrials") or status.get("importedTrialsDropped"):
        lines.append(f"Warm start: {status.get('importedTrials', 0)} imported trials "
                     f"({status.get('importedTrialsDropped', 0)} dropped)")
    if status.get("cpuHoursUsed") is not None:
        lines.append(f"Hours used: {_number(status.get('gpuHoursUsed'))} GPU, {_number(status['cpuHoursUsed'])} CPU")
    lines.append("")
    lines.append(trials_table(study.spec, study.records, study.shapes, study.waiting))
    return "\n".join(lines)


# Written by the operator for itself (the accepted search space, the imported trials): long JSON, not a view.
_INTERNAL_STATUS_FIELDS = ("acceptedSpec", "warmStartTrials")


def status_json(study: ClusterStudy) -> dict[str, Any]:
    """`ktune status -o json`: the job's status (less the operator's own records) and every trial."""
    default = AttemptShape.of(study.spec.trial)
    trials = []
    for record in study.records:
        shape = study.shapes.get(record.number, default)
        trials.append({
            "number": record.number,
            "state": PENDING if record.number in study.waiting else str(record.state),
            "kind": shape.kind,
            "pods": shape.pods,
            "values": record.values,
            "params": record.params,
            "metrics": record.metrics,
            "reason": study.waiting.get(record.number) or record.reason,
        })
    return {**job_summary(study.job), "trials": trials}


def job_summary(job: Mapping[str, Any]) -> dict[str, Any]:
    """One job as `ktune status -o json` lists it: name, namespace, generation and status."""
    metadata = job["metadata"]
    status = {key: value for key, value in (job.get("status") or {}).items() if key not in _INTERNAL_STATUS_FIELDS}
    return {"name": metadata["name"], "namespace": metadata["namespace"], "generation": metadata.get("generation"),
            "status": status}


def list_jobs(cluster: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    """Every TuningJob of the namespace, by name; InspectionError when they cannot be read."""
    try:
        listed = cluster.request("GET", JOBS.format(ns=namespace))
    except ApiError as error:
        raise InspectionError(f"cannot list TuningJobs in {namespace}: {error}") from None
    return sorted(listed.get("items") or [], key=lambda job: job["metadata"]["name"])


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    """`ktune status` without a name: one row per job, the columns of `kubectl get tuningjobs`."""
    rows = [["NAME", "PHASE", "OBJECTIVE", "BEST", "TRIALS", "RUNNING", "MESSAGE"]]
    for job in jobs:
        status = job.get("status") or {}
        rows.append([job["metadata"]["name"], status.get("phase", "Pending"), status.get("objective", ""),
                     _number((status.get("bestTrial") or {}).get("value")), status.get("trials", ""),
                     str((status.get("trialCounts") or {}).get("running", 0)),
                     (status.get("message") or "").splitlines()[0][:80] if status.get("message") else ""])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def settled(job: Mapping[str, Any]) -> bool:
    """Whether the job finished (Succeeded or Failed) as of its current spec: `--watch` stops there."""
    status = job.get("status") or {}
    return status.get("phase") in TERMINAL_PHASES and \
        status.get("observedGeneration") == job["metadata"].get("generation")


def export_study(study: ClusterStudy, storage: str, study_name: str) -> int:
    """Write the finished trials into a new Optuna study in `storage`; returns how many were written."""
    directions = [objective.direction for objective in study.spec.objectives]
    target = optuna.create_study(storage=storage, study_name=study_name, directions=directions)
    distributions = {parameter.name: parameter_distribution(parameter) for parameter in study.spec.parameters}
    written = 0
    for record in study.records:
        if record.state not in OPTUNA_STATES:
            continue
        complete = record.state == TrialState.SUCCEEDED
        target.add_trial(optuna.trial.create_trial(
            state=OPTUNA_STATES[record.state],
            values=list(record.values) if complete and record.values else None,
            params=dict(record.params),
            distributions={name: distributions[name] for name in record.params if name in distributions},
            intermediate_values=dict(record.intermediate),
            user_attrs={"ktune_trial": record.number, "metrics": dict(record.metrics),
                        **({"reason": record.reason} if record.reason else {})},
        ))
        written += 1
    return written


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else ""
