"""Pruner names of a TuningJob -> Optuna pruners."""

from __future__ import annotations

from typing import Any

import optuna

PRUNER_CLASSES: dict[str, type[optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "threshold": optuna.pruners.ThresholdPruner,
}
RESERVED_PRUNER_OPTIONS: frozenset[str] = frozenset()


def build_pruner(name: str, options: dict[str, Any]) -> optuna.pruners.BasePruner:
    """A fresh Optuna pruner for the spec's pruner name and options."""
    if name == "none":
        return optuna.pruners.NopPruner()
    return PRUNER_CLASSES[name](**options)
