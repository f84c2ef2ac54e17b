"""Sampler names of a TuningJob -> Optuna samplers, and the grid a `grid` sampler walks."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from ktune.spec import Parameter

SAMPLER_CLASSES: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
# Set by ktune itself: the seed from spec.sampler.seed, the grid from spec.parameters.
RESERVED_SAMPLER_OPTIONS = frozenset({"seed", "search_space"})


def parameter_values(parameter: Parameter) -> list[Any]:
    """Every value a parameter can take on a grid (float parameters need a step)."""
    if parameter.type == "categorical":
        return list(parameter.choices)
    if parameter.type == "int":
        return list(range(int(parameter.low), int(parameter.high) + 1, int(parameter.step)))
    count = math.floor((parameter.high - parameter.low) / parameter.step + 1e-9) + 1
    return [float(f"{parameter.low + i * parameter.step:.12g}") for i in range(count)]


def grid_size(parameters: Sequence[Parameter]) -> int:
    """Number of points of the full grid, computed without building it."""
    size = 1
    for parameter in parameters:
        if parameter.type == "categorical":
            size *= len(parameter.choices)
        elif parameter.type == "int":
            size *= (int(parameter.high) - int(parameter.low)) // int(parameter.step) + 1
        else:
            size *= math.floor((parameter.high - parameter.low) / parameter.step + 1e-9) + 1
    return size


def grid_search_space(parameters: Sequence[Parameter]) -> dict[str, list[Any]]:
    """The GridSampler search space: parameter name -> its values."""
    return {parameter.name: parameter_values(parameter) for parameter in parameters}


def grid_points(parameters: Sequence[Parameter]) -> list[dict[str, Any]]:
    """All grid points in GridSampler's order (the product of its name-sorted search space)."""
    space = grid_search_space(parameters)
    names = sorted(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))]


def build_sampler(name: str, options: dict[str, Any], seed: int | None,
                  parameters: Sequence[Parameter]) -> optuna.samplers.BaseSampler:
    """A fresh Optuna sampler for the spec's sampler name, options and seed."""
    cls = SAMPLER_CLASSES[name]
    if name == "grid":
        return cls(grid_search_space(parameters), seed=seed, **options)
    return cls(seed=seed, **options)
