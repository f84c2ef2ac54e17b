"""Conversions between ktune's trial records and Optuna's trials and distributions.

A record's extra fields (metrics, reason, times) ride on the Optuna trial as one user attribute, so
that a study rebuilt from a journal gives back the same records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from ktune.engine.records import TrialRecord, TrialState
from ktune.spec import Parameter

USER_ATTR = "ktune"
IMPORTED_ATTR = "ktune_imported"  # marks a warm-start trial in the study (and in a journal)



TO_OPTUNA = {
    TrialState.RUNNING: OptunaState.RUNNING,
    TrialState.SUCCEEDED: OptunaState.COMPLETE,
    TrialState.PRUNED: OptunaState.PRUNED,
    TrialState.FAILED: OptunaState.FAIL,
}
FROM_OPTUNA = {optuna_state: state for state, optuna_state in TO_OPTUNA.items()}


def parameter_distribution(parameter: Parameter) -> BaseDistribution:
    """The Optuna distribution of one TuningJob parameter."""
    if parameter.type == "categorical":
        return CategoricalDistribution(list(parameter.choices))
    low, high = parameter.bounds()
    if parameter.type == "int":
        return IntDistribution(int(low), int(high), log=parameter.log, step=int(parameter.step or 1))
    return FloatDistribution(float(low), float(high), log=parameter.log,
                             step=None if parameter.step is None else float(parameter.step))


def plain_value(value: Any) -> Any:
    """Numpy scalars and the like as plain Python values, for JSON."""
    return value.item() if hasattr(value, "item") and not isinstance(value, int | float | str | bool) else value


def add_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> int:
    """``study.add_trial`` that returns the new trial's id.

    ``add_trial`` returns nothing; finding the id by listing the study after each add cost 20–35% of a
    rebuild's time at 5,000–20,000 trials (BENCHMARKS.md, engine latency) and depends on the storage's cost
    of listing.
    """
    frozen._validate()
    return study._storage.create_new_trial(study._study_id, template_trial=frozen)


def user_attr(record: TrialRecord) -> dict[str, Any]:
    """What a record holds beyond Optuna's own fields, stored on the trial so a journal rebuilds it."""
    data = record.to_dict()
    return {key: data[key] for key in ("intermediate", "metrics", "reason", "message", "started_at",
                                       "finished_at")}


def record_from_frozen(frozen: optuna.trial.FrozenTrial, number: int, *, with_intermediate: bool) -> TrialRecord:
    """The record an Optuna trial found in a storage stands for (`with_intermediate`: single-objective)."""
    extra: Mapping[str, Any] = frozen.user_attrs.get(USER_ATTR, {})
    record = TrialRecord.from_dict({
        "number": number, "params": frozen.params, "state": FROM_OPTUNA[frozen.state].value,
        "values": frozen.values if frozen.state is OptunaState.COMPLETE else None,
        **extra, "system_attrs": frozen.system_attrs,
    })
    if with_intermediate:
        record.intermediate = dict(frozen.intermediate_values)
    return record
