"""Trial objects: one per trial, the durable record the operator rebuilds its study from after a restart.

`spec` holds what never changes (job, number, params); `status` the outcome, written through `/status`.
"""

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, overload

from ktune import contract
from ktune.engine import TrialRecord, TrialState
from ktune.operator.pods import owner_reference, trial_labels, trial_name

TRIAL_API_VERSION = f"{contract.API_GROUP}/{contract.API_VERSION}"
PARAMS_SUMMARY_LIMIT = 200


def trial_manifest(tuningjob: Mapping[str, Any], number: int, params: Mapping[str, Any],
                   started_at: float | None = None, system_attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A new Trial object for trial `number` of `tuningjob` (the TuningJob API object), owned by that job.

    What a rebuilt study needs of a trial that was just asked for (when it started, what the sampler wrote on
    it: grid ids, CMA-ES and NSGA-II state) is part of the object's creation, so an operator killed before
    the first status write loses none of it.
    """
    job_name = tuningjob["metadata"]["name"]
    spec: dict[str, Any] = {"tuningJob": job_name, "number": number, "params": dict(params)}
    if started_at is not None:
        spec["startTime"] = rfc3339(started_at)
    if system_attrs:
        spec["systemAttrs"] = json.dumps(dict(system_attrs), sort_keys=True)
    return {
        "apiVersion": TRIAL_API_VERSION,
        "kind": contract.TRIAL_KIND,
        "metadata": {
            "name": trial_name(job_name, number),
            "namespace": tuningjob["metadata"].get("namespace"),
            "labels": trial_labels(job_name, number),
            "ownerReferences": [owner_reference(tuningjob)],
        },
        "spec": spec,
    }


def trial_status(record: TrialRecord, attempts: int, pod_name: str | None, keep_intermediate: int) -> dict[str, Any]:
    """The Trial's `status` for `record`: bounded in size (the latest `keep_intermediate` steps only)."""
    steps = sorted(record.intermediate)[-keep_intermediate:]
    status: dict[str, Any] = {
        "state": str(record.state),
        "attempts": attempts,
        "podName": pod_name,
        "paramsSummary": params_summary(record.params),
        "intermediate": [{"step": step, "value": json_number(record.intermediate[step])} for step in steps],
        "metrics": {name: json_number(value) for name, value in record.metrics.items()},
        "values": [json_number(value) for value in record.values] if record.values is not None else None,
        "value": json_number(record.values[0]) if record.values else None,
        "reason": record.reason,
        "message": (record.message or "")[-1024:] or None,
        "startTime": rfc3339(record.started_at),
        "finishTime": rfc3339(record.finished_at),
        "systemAttrs": json.dumps(record.system_attrs, sort_keys=True) if record.system_attrs else None,
    }
    return status


def record_from_trial(trial: Mapping[str, Any]) -> TrialRecord:
    """The engine's record of a Trial object (a Trial created but never given a status is Running)."""
    spec = trial["spec"]
    status = trial.get("status") or {}
    values = status.get("values")
    return TrialRecord(
        number=int(spec["number"]),
        params=dict(spec.get("params") or {}),
        state=TrialState(status.get("state") or TrialState.RUNNING),
        values=[_number(value) for value in values] if values is not None else None,
        intermediate={int(item["step"]): _number(item["value"]) for item in status.get("intermediate") or []},
        metrics={name: _number(value) for name, value in (status.get("metrics") or {}).items()},
        reason=status.get("reason"),
        message=status.get("message"),
        started_at=epoch(status.get("startTime") or spec.get("startTime")),
        finished_at=epoch(status.get("finishTime")),
        system_attrs=json.loads(status.get("systemAttrs") or spec.get("systemAttrs") or "{}"),
    )


def trial_attempts(trial: Mapping[str, Any]) -> int:
    """How many pods the operator recorded as started for this Trial."""
    return int((trial.get("status") or {}).get("attempts") or 0)


def params_summary(params: Mapping[str, Any]) -> str:
    """A short one-line rendering of the params for `kubectl get trials` (JSON, cut at 200 characters)."""
    text = json.dumps(dict(params), separators=(",", ":"), sort_keys=True)
    return text if len(text) <= PARAMS_SUMMARY_LIMIT else text[: PARAMS_SUMMARY_LIMIT - 3] + "..."


@overload
def rfc3339(timestamp: float) -> str: ...
@overload
def rfc3339(timestamp: float | None) -> str | None: ...
def rfc3339(timestamp: float | None) -> str | None:
    """An epoch timestamp as Kubernetes writes times (seconds precision, UTC)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str | None) -> float | None:
    """The epoch seconds of an RFC 3339 time as Kubernetes writes it."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def json_number(value: float) -> float | None:
    """JSON has no NaN or infinity: such a value is written as null."""
    return float(value) if math.isfinite(value) else None


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)
