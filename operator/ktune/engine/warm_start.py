"""Warm start: which finished trials of earlier jobs seed a new job's study.

A source job is compatible when it has the same parameter names with the same types as the new job
(bounds and choices may differ). Of a compatible job, every succeeded trial is imported whose values
all lie inside the new job's space and whose final metrics hold every objective metric of the new
job; the other succeeded trials are dropped and counted. Pruned, failed and running trials are not
imported. The engine adds the imported trials to its study before the job's own trials (see
`ktune.engine.Engine`), so they inform the sampler without taking trial numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ktune.engine.records import TrialRecord, TrialState
from ktune.spec import JobSpec, Parameter, value_in_space


@dataclass(frozen=True)
class WarmStartSource:
    """An earlier job's trials; `parameters` is its search space (None when unknown: judged per trial)."""

    label: str  # how messages name it: "namespace/name" or a run directory
    parameters: tuple[Parameter, ...] | None
    records: Sequence[TrialRecord]


@dataclass
class ImportedTrials:
    """What a warm start brings: trials to import (numbered 0, 1, ... in import order) and what was left out."""

    records: list[TrialRecord] = field(default_factory=list)
    dropped: int = 0
    incompatible: list[str] = field(default_factory=list)  # one message per source skipped as a whole


def incompatibility(spec: JobSpec, parameters: Sequence[Parameter]) -> str | None:
    """Why a search space is not compatible with the job's (names or types differ), or None."""
    mine = {p.name: p.type for p in spec.parameters}
    theirs = {p.name: p.type for p in parameters}
    if set(mine) != set(theirs):
        return f"parameters {', '.join(sorted(theirs))} differ from {', '.join(sorted(mine))}"
    changed = [f"{name} is {theirs[name]}, not {kind}" for name, kind in mine.items() if theirs[name] != kind]
    return "; ".join(changed) or None


def _fitted(parameter: Parameter, value: Any) -> Any:
    """The value as the new parameter takes it (an int parameter's 3.0 becomes 3)."""
    if parameter.type == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if parameter.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _imported(spec: JobSpec, record: TrialRecord, number: int) -> TrialRecord | None:
    """The record as an imported trial of the new job, or None when it does not fit the new space."""
    by_name = {p.name: p for p in spec.parameters}
    if set(record.params) != set(by_name):
        return None
    params = {name: _fitted(by_name[name], value) for name, value in record.params.items()}
    if not all(value_in_space(by_name[name], value) for name, value in params.items()):
        return None
    measured = [record.metrics.get(metric) for metric in spec.objective_metrics]
    values = [value for value in measured if value is not None and math.isfinite(value)]
    if len(values) < len(measured):
        return None
    return TrialRecord(number=number, params=params, state=TrialState.SUCCEEDED, values=values,
                       metrics=dict(record.metrics), started_at=record.started_at, finished_at=record.finished_at)


def import_trials(spec: JobSpec, sources: Iterable[WarmStartSource]) -> ImportedTrials:
    """The trials of `sources` that seed a job with `spec` (order: sources as given, trials by number)."""
    result = ImportedTrials()
    for source in sources:
        if source.parameters is not None:
            reason = incompatibility(spec, source.parameters)
            if reason is not None:
                result.incompatible.append(f"{source.label}: search space not compatible ({reason})")
                continue
        for record in sorted(source.records, key=lambda r: r.number):
            if record.state is not TrialState.SUCCEEDED:
                continue
            imported = _imported(spec, record, len(result.records))
            if imported is None:
                result.dropped += 1
            else:
                result.records.append(imported)
    return result
