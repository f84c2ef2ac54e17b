"""A TuningJob's status: phase, conditions after the Kubernetes API conventions, counts and the best trial.

Bounded in size whatever the number of trials: per-trial history lives in Trial objects.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from ktune.engine import TrialRecord
from ktune.operator.pods import trial_name
from ktune.operator.trials import json_number
from ktune.spec import Objective

PENDING, RUNNING, SUSPENDED, SUCCEEDED, FAILED = "Pending", "Running", "Suspended", "Succeeded", "Failed"
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})

# Condition types: `kubectl wait --for=condition=Succeeded tuningjob/NAME` waits for a finished job.
COND_RUNNING, COND_SUCCEEDED, COND_FAILED, COND_INVALID = "Running", "Succeeded", "Failed", "Invalid"
COND_SPEC_CHANGE_REFUSED = "SpecChangeRefused"
COND_SUSPENDED = "Suspended"
# For GitOps tools (kstatus: `kubectl wait`, Flux, cli-utils; Argo CD's health Lua in the README): Ready is True once
# the job succeeded, Stalled is True once it failed (invalid included); either way observedGeneration must match.
COND_READY, COND_STALLED = "Ready", "Stalled"
# True while a trial cannot start for a passing reason (a used-up ResourceQuota): it waits, using no retry.
COND_TRIALS_WAITING = "TrialsWaiting"


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """`conditions` with the one of type `type_` set; its lastTransitionTime moves only when its status does."""
    updated: list[dict[str, Any]] = []
    previous: Mapping[str, Any] | None = None
    for condition in conditions:
        if condition.get("type") == type_:
            previous = condition
        else:
            updated.append(dict(condition))
    text = "True" if status else "False"
    changed = previous is None or previous.get("status") != text
    updated.append(
        {
            "type": type_,
            "status": text,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now if changed or previous is None else previous.get("lastTransitionTime", now),
            "observedGeneration": generation,
        }
    )
    return sorted(updated, key=lambda condition: condition["type"])


def condition_status(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    """Whether the condition `type_` is True."""
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def trial_counts(counts: Mapping[str, int], max_trials: int) -> dict[str, int]:
    """The `trialCounts` block: the engine's counts plus `total` and `max`."""
    result = {key: int(counts.get(key, 0)) for key in ("running", "succeeded", "pruned", "failed")}
    result["total"] = sum(result.values())
    result["max"] = max_trials
    return result


def trials_progress(counts: Mapping[str, int]) -> str:
    """`done/max` for the TRIALS printer column."""
    done = counts["succeeded"] + counts["pruned"] + counts["failed"]
    return f"{done}/{counts['max']}"


def trial_summary(tuningjob: str, record: TrialRecord, with_metrics: bool = True) -> dict[str, Any]:
    """A finished trial as `bestTrial` and `paretoFront` list it."""
    values = [json_number(value) for value in record.values or []]
    summary: dict[str, Any] = {
        "name": trial_name(tuningjob, record.number),
        "number": record.number,
        "params": dict(record.params),
        "values": values,
    }
    if len(values) == 1:
        summary["value"] = values[0]
    if with_metrics:
        summary["metrics"] = {name: json_number(value) for name, value in record.metrics.items()}
    return summary


def objective_summary(objectives: Iterable[Objective]) -> str:
    """`status.objective`, the OBJECTIVE column: what BEST means, e.g. `max accuracy` or `max f1, min latency_ms`."""
    return ", ".join(f"{objective.direction[:3]} {objective.metric}" for objective in objectives)


def progress_message(counts: Mapping[str, int], best: Mapping[str, Any] | None, objective: str) -> str:
    """One human line about where the job stands."""
    text = f"{trials_progress(counts)} trials done, {counts['running']} running"
    if best is not None and "value" in best:
        text += f"; best {objective}={best['value']:.6g} ({best['name']})"
    return text
