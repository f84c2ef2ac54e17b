"""Trial objects: one per trial, the durable record the operator rebuilds its study from after a restart.

`spec` holds what never changes (job, number, params); `status` the outcome, written through `/status`.

Intermediate values are kept twice: `status.intermediate` lists the latest `intermediate_values_kept` (100)
for people and tools, and `status.intermediateHistory` holds every step a pruner may look at, so a rebuilt
study judges a trial as the original would have (`ktune.engine.pruning`). The history is one compact string
(`history_text`): at most the latest 10,000 steps, so a trial that reports more is judged after a restart on
its latest 10,000; and at most 460,000 characters (46 a step: up to 20 digits, a float as Python writes
it; steps of more digits keep fewer), so a Trial stays far below etcd's 1.5 MiB limit.
"""

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self, overload

from ktune import contract
from ktune.engine import TrialRecord, TrialState
from ktune.operator.pods import owner_reference, trial_labels, trial_name
from ktune.spec import TrialSpec
from ktune.spec.status_schema import MAX_INTERMEDIATE_HISTORY_LENGTH, MAX_INTERMEDIATE_HISTORY_STEPS

TRIAL_API_VERSION = f"{contract.API_GROUP}/{contract.API_VERSION}"
PARAMS_SUMMARY_LIMIT = 200
log = logging.getLogger(__name__)


POD_KIND = "Pod"


@dataclass(frozen=True)
class AttemptShape:
    """What each attempt of a trial runs: one pod, or a resource of `kind` (a Job, a PyTorchJob, ...) running
    `pods` pods at once. The Trial's status shows it (the KIND and PODS columns)."""

    kind: str = POD_KIND
    pods: int = 1

    @classmethod
    def of(cls, trial: TrialSpec) -> Self:
        return cls() if trial.resource is None else cls(trial.resource.kind, trial.resource.pods)


def recorded_attempt(trial: Mapping[str, Any]) -> tuple[str | None, AttemptShape]:
    """The name and shape of a Trial's current (or last) attempt as its status records them (a Trial written
    before the shape was recorded ran one pod)."""
    status = trial.get("status") or {}
    shape = AttemptShape(str(status.get("kind") or POD_KIND), int(status.get("pods") or 1))
    return status.get("podName") if shape.kind == POD_KIND else status.get("resourceName"), shape


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


PENDING = "Pending"
"""A Trial's state while its attempt waits in a Kueue queue (the engine's record is Running)."""


def trial_status(record: TrialRecord, attempts: int, attempt_name: str | None, keep_intermediate: int,
                 waiting: tuple[str, str] | None = None, shape: AttemptShape = AttemptShape()) -> dict[str, Any]:
    """The Trial's `status` for `record`: bounded in size (the latest `keep_intermediate` steps only). A running
    record whose attempt waits for admission (`waiting`: reason, message) is shown Pending with them.
    `attempt_name` names the current attempt's pod (`podName`) or, for a resource trial, its resource
    (`resourceName`)."""
    steps = sorted(record.intermediate)[-keep_intermediate:]
    pod = shape.kind == POD_KIND
    status: dict[str, Any] = {
        "state": str(record.state),
        "attempts": attempts,
        "kind": shape.kind,
        "pods": shape.pods,
        "podName": attempt_name if pod else None,
        "resourceName": None if pod else attempt_name,
        "paramsSummary": params_summary(record.params),
        "intermediate": [{"step": step, "value": json_number(record.intermediate[step])} for step in steps],
        "intermediateHistory": history_text(record.intermediate) or None,
        "metrics": {name: json_number(value) for name, value in record.metrics.items()},
        "values": [json_number(value) for value in record.values] if record.values is not None else None,
        "value": json_number(record.values[0]) if record.values else None,
        "reason": record.reason,
        "message": (record.message or "")[-1024:] or None,
        "startTime": rfc3339(record.started_at),
        "finishTime": rfc3339(record.finished_at),
        "systemAttrs": json.dumps(record.system_attrs, sort_keys=True) if record.system_attrs else None,
    }
    if waiting is not None and record.state is TrialState.RUNNING:
        status["state"], status["reason"], status["message"] = PENDING, waiting[0], waiting[1][-1024:]
    return status


def record_from_trial(trial: Mapping[str, Any]) -> TrialRecord:
    """The engine's record of a Trial object (a Trial created but never given a status is Running)."""
    spec = trial["spec"]
    status = trial.get("status") or {}
    pending = status.get("state") == PENDING  # running, its attempt waiting in a queue: no outcome's reason yet
    values = status.get("values")
    intermediate = _history(trial)  # a Trial written before the history existed has only the latest steps:
    for item in status.get("intermediate") or []:
        intermediate.setdefault(int(item["step"]), _number(item["value"]))
    return TrialRecord(
        number=int(spec["number"]),
        params=dict(spec.get("params") or {}),
        state=TrialState.RUNNING if pending else TrialState(status.get("state") or TrialState.RUNNING),
        values=[_number(value) for value in values] if values is not None else None,
        intermediate=dict(sorted(intermediate.items())),
        metrics={name: _number(value) for name, value in (status.get("metrics") or {}).items()},
        reason=None if pending else status.get("reason"),
        message=None if pending else status.get("message"),
        started_at=epoch(status.get("startTime") or spec.get("startTime")),
        finished_at=epoch(status.get("finishTime")),
        system_attrs=json.loads(status.get("systemAttrs") or spec.get("systemAttrs") or "{}"),
    )


def history_text(intermediate: Mapping[int, float]) -> str:
    """The latest steps (bounded as the module docstring says) as `step:value` items joined by commas, where
    the step is left out when it follows the one before (`0:0.5,0.6,0.7,10:0.8` is steps 0, 1, 2 and 10)."""
    steps = sorted(intermediate)[-MAX_INTERMEDIATE_HISTORY_STEPS:]
    while True:
        items = []
        for previous, step in zip([None, *steps], steps, strict=False):
            value = repr(float(intermediate[step]))
            items.append(value if previous is not None and step == previous + 1 else f"{step}:{value}")
        text = ",".join(items)
        if len(text) <= MAX_INTERMEDIATE_HISTORY_LENGTH:
            return text
        steps = steps[max(1, len(steps) // 2):]  # only steps of more than 20 digits get here


def parse_history(text: str) -> dict[int, float]:
    """The steps `history_text` wrote (ValueError for text it cannot have written)."""
    intermediate: dict[int, float] = {}
    step = -1
    for item in text.split(",") if text else []:
        written, _, value = item.rpartition(":")
        step = int(written) if written else step + 1
        intermediate[step] = float(value)
    return intermediate


def _history(trial: Mapping[str, Any]) -> dict[int, float]:
    """A Trial's `status.intermediateHistory`; one that cannot be read counts as absent (only the operator
    writes status, so that means a hand edit), and `status.intermediate` is all that is left."""
    try:
        return parse_history((trial.get("status") or {}).get("intermediateHistory") or "")
    except ValueError as error:
        log.warning("Trial %s: status.intermediateHistory is not what the operator writes (%s); using "
                    "status.intermediate only", trial.get("metadata", {}).get("name"), error)
        return {}


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
