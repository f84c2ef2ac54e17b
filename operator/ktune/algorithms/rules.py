"""ktune's rules for samplers and pruners, as `ktune.spec` asks for them (`AlgorithmRules`).

Option checks read Optuna's constructor signatures (`ktune.algorithms.options`); then each sampler and
pruner is built once, so that the values Optuna's constructors refuse are named at validation time
rather than mid-job.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ktune.algorithms.options import option_problems
from ktune.algorithms.pruners import PRUNER_CLASSES, RESERVED_PRUNER_OPTIONS, build_pruner
from ktune.algorithms.samplers import RESERVED_SAMPLER_OPTIONS, SAMPLER_CLASSES, build_sampler, grid_size
from ktune.spec import MAX_GRID_POINTS, Parameter, Problems

# Samplers that optimise one objective only (Optuna refuses or ignores the others).
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)


class OptunaRules:
    """The samplers and pruners of `SAMPLER_CLASSES` and `PRUNER_CLASSES`, checked against Optuna."""

    sampler_names: tuple[str, ...] = tuple(SAMPLER_CLASSES)
    single_objective_samplers: tuple[str, ...] = SINGLE_OBJECTIVE_SAMPLERS
    pruner_names: tuple[str, ...] = tuple(PRUNER_CLASSES)

    def sampler_option_problems(self, name: str, options: Mapping[str, Any], path: str) -> Problems:
        return option_problems(path, "sampler", name, SAMPLER_CLASSES[name], options, RESERVED_SAMPLER_OPTIONS)

    def pruner_option_problems(self, name: str, options: Mapping[str, Any], path: str) -> Problems:
        return option_problems(path, "pruner", name, PRUNER_CLASSES[name], options, RESERVED_PRUNER_OPTIONS)

    def sampler_fit_problems(self, name: str, options: Mapping[str, Any], seed: int | None,
                             parameters: Sequence[Parameter], objective_count: int) -> Problems:
        if name in SINGLE_OBJECTIVE_SAMPLERS and objective_count > 1:
            return [("spec.sampler.name", f"{name} optimises a single objective; use tpe, nsga2, random, qmc "
                                          "or gp for objectives")]
        if name == "grid":
            stepless = [i for i, p in enumerate(parameters) if p.type == "float" and p.step is None]
            if stepless:
                return [(f"spec.parameters[{i}]", "grid sampler needs a step on every float parameter")
                        for i in stepless]
            points = grid_size(parameters)
            if points > MAX_GRID_POINTS:
                return [("spec.parameters", f"grid has too many points: at most {MAX_GRID_POINTS} (got {points})")]
        return _build_problems("spec.sampler.options", lambda: build_sampler(name, dict(options), seed, parameters))

    def pruner_build_problems(self, name: str, options: Mapping[str, Any]) -> Problems:
        return _build_problems("spec.pruner.options", lambda: build_pruner(name, dict(options)))


def _build_problems(path: str, build: Callable[[], Any]) -> Problems:
    """Construct the Optuna object once, so that the values its constructor refuses are named now."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build()
    except Exception as error:  # Optuna's constructors raise ValueError/TypeError/AssertionError on bad values
        return [(path, f"refused by Optuna: {error}")]
    return []
