"""GPU- and CPU-hour budgets: what one trial requests, what the job's trials used, and whether one more fits.

Pure arithmetic over trial records, shared by both runners through the engine:

- a trial requests the GPUs and CPUs of its template's containers (`ktune.spec.resources`);
- a trial's hours are its requested GPUs (CPUs) times its running time, from its start to its finish
  (or to now while it runs); pruned and failed trials count like succeeded ones;
- the next trial is launched only when the hours used, plus what the running trials will likely still
  use, plus the next trial's likely use, stay within the budget. "Likely" is the mean running time of
  the finished trials; before any trial finished there is no estimate, so one trial runs alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ktune.engine.records import TrialRecord
from ktune.spec import Budget, TrialResources

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class BudgetUsage:
    """Hours the job's trials used so far, and what the budget rule needs to look ahead."""

    gpu_hours: float
    cpu_hours: float
    mean_trial_hours: float | None  # mean running time of finished trials; None before any finished
    running_elapsed_hours: tuple[float, ...]  # how long each running trial has run so far


def budget_usage(records: Iterable[TrialRecord], resources: TrialResources, now: float) -> BudgetUsage:
    """Hours used by `records` (those with a start time), running ones counted up to `now`."""
    finished: list[float] = []
    running: list[float] = []
    for record in records:
        if record.started_at is None:
            continue
        if record.finished_at is None:
            running.append(max(0.0, now - record.started_at) / SECONDS_PER_HOUR)
        else:
            finished.append(max(0.0, record.finished_at - record.started_at) / SECONDS_PER_HOUR)
    hours = sum(finished) + sum(running)
    return BudgetUsage(
        gpu_hours=hours * resources.gpus,
        cpu_hours=hours * resources.cpus,
        mean_trial_hours=sum(finished) / len(finished) if finished else None,
        running_elapsed_hours=tuple(running),
    )


def _limits(budget: Budget, usage: BudgetUsage, resources: TrialResources) -> list[tuple[str, float, float, float]]:
    """(name, limit, hours used, per-trial-hour rate) of each hour budget that applies to this job."""
    limits = []
    if budget.max_gpu_hours is not None and resources.gpus > 0:
        limits.append(("maxGpuHours", budget.max_gpu_hours, usage.gpu_hours, resources.gpus))
    if budget.max_cpu_hours is not None and resources.cpus > 0:
        limits.append(("maxCpuHours", budget.max_cpu_hours, usage.cpu_hours, resources.cpus))
    return limits


def trials_within_budget(budget: Budget, usage: BudgetUsage, resources: TrialResources) -> int | None:
    """How many more trials may start now under the hour budgets; None when the job has none."""
    limits = _limits(budget, usage, resources)
    if not limits:
        return None
    fits: list[int] = []
    for _name, limit, used, rate in limits:
        if used >= limit:
            fits.append(0)
        elif usage.mean_trial_hours is None:
            fits.append(0 if usage.running_elapsed_hours else 1)
        else:
            mean = usage.mean_trial_hours
            still = sum(max(0.0, mean - elapsed) for elapsed in usage.running_elapsed_hours)
            left = limit - used - still * rate
            fits.append(0 if mean == 0 else max(0, math.floor(left / (mean * rate) + 1e-9)))
    return min(fits)


def exhausted_message(budget: Budget, usage: BudgetUsage, resources: TrialResources) -> str:
    """Why no further trial fits, naming each hour budget with its use."""
    parts = []
    for name, limit, used, rate in _limits(budget, usage, resources):
        unit = "GPU" if name == "maxGpuHours" else "CPU"
        estimate = "" if usage.mean_trial_hours is None else \
            f", a trial takes about {usage.mean_trial_hours * rate:.4g} {unit}-hours"
        parts.append(f"{used:.4g} of {limit:g} {unit}-hours used ({name}{estimate})")
    return "; ".join(parts) + ": the next trial would likely exceed the budget"
