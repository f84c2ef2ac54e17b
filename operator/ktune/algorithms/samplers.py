"""Sampler names of a TuningJob -> Optuna samplers, and the grid a `grid` sampler walks."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.samplers._lazy_random_state import LazyRandomState

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
_QUIET_BY_DEFAULT = ("cmaes", "qmc", "gp")


def parameter_values(parameter: Parameter) -> list[Any]:
    """Every value a parameter can take on a grid (float parameters need a step)."""
    if parameter.type == "categorical":
        return list(parameter.choices)
    low, high, step = _grid_range(parameter)
    if parameter.type == "int":
        return list(range(int(low), int(high) + 1, int(step)))
    count = math.floor((high - low) / step + 1e-9) + 1
    # Rounded so that 1e-4 + 2 * 1e-4 reads 0.0003 (it becomes an env var), clamped to stay in range.
    low, high = float(low), float(high)
    return [min(max(float(f"{low + i * step:.12g}"), low), high) for i in range(count)]


def _grid_range(parameter: Parameter) -> tuple[float, float, float]:
    """low, high and step of a numeric parameter on a grid (the algorithm rules require the step)."""
    low, high = parameter.bounds()
    if parameter.step is None:
        raise ValueError(f"parameter {parameter.name}: a grid needs a step")
    return low, high, parameter.step


def grid_size(parameters: Sequence[Parameter]) -> int:
    """Number of points of the full grid, computed without building it."""
    size = 1
    for parameter in parameters:
        if parameter.type == "categorical":
            size *= len(parameter.choices)
        else:
            low, high, step = _grid_range(parameter)
            if parameter.type == "int":
                size *= (int(high) - int(low)) // int(step) + 1
            else:
                size *= math.floor((high - low) / step + 1e-9) + 1
    return size


def grid_search_space(parameters: Sequence[Parameter]) -> dict[str, list[Any]]:
    """The GridSampler search space: parameter name -> its values."""
    return {parameter.name: parameter_values(parameter) for parameter in parameters}


def grid_points(parameters: Sequence[Parameter]) -> list[dict[str, Any]]:
    """All grid points in GridSampler's order (the product of its name-sorted search space)."""
    space = grid_search_space(parameters)
    names = sorted(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))]


def trial_seed(seed: int | None, number: int) -> int | None:
    """The seed of the sampler that suggests trial `number`: a function of the job's seed and the number only.

    Optuna samplers advance their random state on every suggestion, so a study rebuilt from records would
    drift from the original. Building a fresh sampler per trial from this seed makes each suggestion depend
    on the study's trials and the trial number alone.
    """
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}/{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its study.stop() once the grid is exhausted.

    Optuna's GridSampler stops `study.optimize` from `after_trial`, which raises under ask-and-tell;
    ktune instead caps the job's trials at the grid's size.
    """

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                    state: optuna.trial.TrialState, values: Sequence[float] | None) -> None:
        return None


class TrialNumberQMCSampler(optuna.samplers.QMCSampler):
    """QMCSampler whose index into the low-discrepancy sequence is the trial number.

    Optuna counts QMC samples in a study attribute that trial records do not carry; indexing by the
    trial number continues the same sequence in a study rebuilt from records and never repeats a point.
    """

    def __init__(self, number: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._trial_number = number

    def _find_sample_id(self, study: optuna.Study, search_space: dict[str, Any]) -> int:
        return self._trial_number


class RecomputingNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGAIISampler that selects each generation's parents from the trials instead of a study cache.

    Optuna caches the parents in a study attribute that trial records do not carry, and a cache hit
    returns them in a different order than a fresh selection, so a rebuilt study would breed other
    children. Selecting afresh on every suggestion depends on the trials alone.
    """

    def get_parent_population(self, study: optuna.Study, generation: int) -> list[optuna.trial.FrozenTrial]:
        return [] if generation == 0 else self.select_parent(study, generation)


def build_sampler(name: str, options: dict[str, Any], seed: int | None, parameters: Sequence[Parameter],
                  number: int = 0) -> optuna.samplers.BaseSampler:
    """A fresh Optuna sampler that suggests trial `number` (see `trial_seed`)."""
    per_trial_seed = trial_seed(seed, number)
    if name in _QUIET_BY_DEFAULT:
        # Categorical parameters fall back to independent sampling in these samplers on every trial and
        # Optuna would log that each time; users who want the warning set the option.
        options = {"warn_independent_sampling": False} | options
    if name == "grid":
        # The grid's shuffle must stay fixed (grid ids in trial records index into it); only the
        # choice among unvisited points uses the per-trial seed.
        sampler = AskTellGridSampler(grid_search_space(parameters), seed=seed, **options)
        sampler._rng = LazyRandomState(per_trial_seed)
        return sampler
    if name == "qmc":
        # The sequence's own seed stays fixed; the first trial (sampled before QMC knows the space) uses
        # the per-trial seed.
        return TrialNumberQMCSampler(number, seed=0 if seed is None else seed,
                                     independent_sampler=optuna.samplers.RandomSampler(seed=per_trial_seed),
                                     **options)
    if name == "nsga2":
        return RecomputingNSGAIISampler(seed=per_trial_seed, **options)
    # Every other class in the table takes a seed (BaseSampler itself declares no constructor arguments).
    sampler_class: Callable[..., optuna.samplers.BaseSampler] = SAMPLER_CLASSES[name]
    return sampler_class(seed=per_trial_seed, **options)
