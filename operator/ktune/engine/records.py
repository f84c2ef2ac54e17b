"""A trial as ktune keeps it, the outcome of a job, and the reasons both use.

Plain records, with no Optuna in them: the operator persists them in Trial objects, `ktune run` in its
journal, and the engine converts them to and from Optuna trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

JOB_STOPPED = "JobStopped"
TRIAL_DELETED = "TrialDeleted"  # its Trial object was deleted by hand: the operator knows nothing more of it
PRUNED_BY_PRUNER = "PrunedByPruner"
MISSING_OBJECTIVE = "MissingObjective"
INVALID_OBJECTIVE = "InvalidObjective"
BUDGET_EXHAUSTED = "BudgetExhausted"
NOT_COUNTED_AS_FAILED = (JOB_STOPPED, TRIAL_DELETED)
"""Failure reasons that are not the trial's fault: `maxFailedTrials` does not count them."""


class TrialState(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    PRUNED = "Pruned"
    FAILED = "Failed"


@dataclass
class TrialRecord:
    """One trial as ktune persists it (Trial objects, local files); converts to and from Optuna trials.

    `system_attrs` holds what the sampler wrote on the trial; a rebuilt engine needs it to continue
    grid, CMA-ES and NSGA-II searches where they were.
    """

    number: int
    params: dict[str, Any]
    state: TrialState
    values: list[float] | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    system_attrs: dict[str, Any] = field(default_factory=dict)

    def objective_values(self) -> list[float]:
        """The objective values of a succeeded trial (a succeeded record always holds them)."""
        if self.values is None:
            raise ValueError(f"trial {self.number} ({self.state.value}) has no objective values")
        return self.values

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (intermediate steps become string keys, as JSON requires)."""
        data = asdict(self)
        data["state"] = self.state.value
        data["intermediate"] = {str(step): value for step, value in self.intermediate.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(
            number=int(data["number"]),
            params=dict(data["params"]),
            state=TrialState(data["state"]),
            values=None if data.get("values") is None else [float(v) for v in data["values"]],
            intermediate={int(step): float(value) for step, value in (data.get("intermediate") or {}).items()},
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
            reason=data.get("reason"),
            message=data.get("message"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            system_attrs=dict(data.get("system_attrs") or {}),
        )


@dataclass(frozen=True)
class FinishDecision:
    reason: str
    message: str
    succeeded: bool


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that are finite numbers, as floats (records stay JSON-safe)."""
    finite = {}
    for name, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            finite[str(name)] = float(value)
    return finite


def dominates(a: list[float], b: list[float], maximize: list[bool]) -> bool:
    """True when `a` is at least as good as `b` in every objective and better in one."""
    better = False
    for x, y, up in zip(a, b, maximize, strict=True):
        if (x < y) if up else (x > y):
            return False
        better |= (x > y) if up else (x < y)
    return better
