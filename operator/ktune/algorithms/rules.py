"""ktune's rules for samplers and pruners, as `ktune.spec` asks for them (`AlgorithmRules`).

Option checks read Optuna's constructor signatures (`ktune.algorithms.options`); then each sampler and
pruner is built once, so that the values Optuna's constructors refuse are named at validation time
rather than mid-job.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ktune.algorithms.options import option_problems
from ktune.algorithms.pruners import PRUNER_CLASSES, RESERVED_PRUNER_OPTIONS, build_pruner
from ktune.algorithms.samplers import RESERVED_SAMPLER_OPTIONS, SAMPLER_CLASSES, build_sampler, grid_size
from ktune.spec import MAX_GRID_POINTS, Parameter, Problems

# Samplers that optimise one objective only (Optuna refuses or ignores the others).
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)


# Samplers the operator image cannot run, by the module they need: `ktune run` offers them where it imports.
# Measured (tests/install/test_operator_install.py builds that install): the operator's venv is 0.55 GB with
# scipy for qmc (0.14 GB of it); PyPI's torch for gp would add 5.3 GB with its CUDA libraries.
LOCAL_ONLY_SAMPLERS = {"gp": "torch"}


class OptunaRules:
    """The samplers and pruners of `SAMPLER_CLASSES` and `PRUNER_CLASSES`, checked against Optuna.

    The default rules are the cluster's (the CRD, `ktune validate`, the operator): no sampler of
    `LOCAL_ONLY_SAMPLERS`. `local=True` are `ktune run`'s: those too, where their module imports.
    """

    def __init__(self, local: bool = False) -> None:
        self.unavailable_samplers = {name: _unavailable(name, module, local)
                                     for name, module in LOCAL_ONLY_SAMPLERS.items()
                                     if not (local and importlib.util.find_spec(module) is not None)}
        self.sampler_names = tuple(name for name in SAMPLER_CLASSES if name not in self.unavailable_samplers)
        self.single_objective_samplers = SINGLE_OBJECTIVE_SAMPLERS
        self.pruner_names = tuple(PRUNER_CLASSES)

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


def _unavailable(name: str, module: str, local: bool) -> str:
    if local:
        return f"{name} needs {module}, which is not installed here: pip install {module} (or ktune[trainer])"
    return (f"{name} runs only with `ktune run`: Optuna's {name} sampler needs {module}, which the operator image "
            f"leaves out (PyPI's {module} would add about 5 GB); on a cluster use tpe, qmc or cmaes")


def _build_problems(path: str, build: Callable[[], Any]) -> Problems:
    """Construct the Optuna object once, so that the values its constructor refuses are named now."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build()
    except Exception as error:  # Optuna's constructors raise ValueError/TypeError/AssertionError on bad values
        return [(path, f"refused by Optuna: {error}")]
    return []
