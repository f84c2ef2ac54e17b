"""Which keyword arguments of an Optuna sampler or pruner a TuningJob may set in `options`.

The allowed options are read from the constructor's signature, so they follow the installed Optuna.
Arguments that take Python objects (callables, other samplers, trials) cannot be written in YAML and
arguments ktune sets itself (`seed`, the grid's `search_space`) are left out.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

from ktune.spec import did_you_mean, show

_PYTHON_OBJECT_HINTS = ("Callable", "Base", "FrozenTrial", "Study")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "None": (type(None),),
    "dict": (dict,),
    "list": (list,),
}


def _annotation_text(parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def settable_options(cls: type[object], reserved: frozenset[str]) -> dict[str, str]:
    """Option name -> its type annotation as text, for every keyword a YAML spec can set."""
    options: dict[str, str] = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in reserved:
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        text = _annotation_text(parameter)
        if any(hint in text for hint in _PYTHON_OBJECT_HINTS):
            continue
        options[name] = text
    return options


def required_options(cls: type[object], reserved: frozenset[str]) -> tuple[str, ...]:
    """Constructor arguments without a default (e.g. PercentilePruner's `percentile`)."""
    return tuple(
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self"
        and name not in reserved
        and parameter.default is inspect.Parameter.empty
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    )


def _accepted_types(annotation: str) -> tuple[type, ...] | None:
    """The JSON types an annotation admits, or None when it says nothing we can check."""
    top_level = re.sub(r"\[.*\]", "", annotation)
    names = [token for token in re.findall(r"[A-Za-z_]+", top_level) if token in _JSON_TYPES]
    if not names:
        return None
    return tuple(t for token in names for t in _JSON_TYPES[token])


def value_fits(value: Any, annotation: str) -> bool:
    """Whether a YAML value suits a constructor argument's annotation (bool is not an int here)."""
    accepted = _accepted_types(annotation)
    if accepted is None:
        return True
    if isinstance(value, bool):
        return bool in accepted
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, accepted)


# Options Optuna still accepts but no longer acts on: a job that sets them would not do what it says.
IGNORED_OPTIONS: dict[tuple[str, str], str] = {
    ("cmaes", "restart_strategy"): "deprecated in Optuna 4.4, restarts moved to OptunaHub",
    ("cmaes", "inc_popsize"): "deprecated in Optuna 4.4, restarts moved to OptunaHub",
}
# Option ranges Optuna's constructors leave unchecked (a bad value would fail or misbehave mid-job):
# (sampler or pruner, option) -> (minimum, whether the minimum itself is allowed).
OPTION_MINIMUMS: dict[tuple[str, str], tuple[float, bool]] = {
    ("tpe", "n_startup_trials"): (0, True),
    ("tpe", "n_ei_candidates"): (1, True),
    ("tpe", "prior_weight"): (0, False),
    ("cmaes", "n_startup_trials"): (0, True),
    ("cmaes", "popsize"): (2, True),
    ("cmaes", "sigma0"): (0, False),
    ("gp", "n_startup_trials"): (0, True),
    ("hyperband", "min_resource"): (1, True),
    ("hyperband", "max_resource"): (1, True),
    ("hyperband", "reduction_factor"): (2, True),
    ("hyperband", "bootstrap_count"): (0, True),
}


def option_problems(path: str, kind: str, name: str, cls: type, options: Mapping[str, Any],
                    reserved: frozenset[str]) -> list[tuple[str, str]]:
    """Options of the sampler/pruner `name` against its Optuna constructor (`kind`: sampler or pruner)."""
    allowed = settable_options(cls, reserved)
    problems: list[tuple[str, str]] = []
    for key, value in options.items():
        if key == "seed" and key in reserved:
            problems.append((f"{path}.{key}", "set by ktune, not an option (use spec.sampler.seed)"))
        elif key in reserved:
            problems.append((f"{path}.{key}", "set by ktune from spec.parameters, not an option"))
        elif (name, key) in IGNORED_OPTIONS:
            problems.append((f"{path}.{key}", f"Optuna ignores this option ({IGNORED_OPTIONS[name, key]}); "
                                              "remove it"))
        elif key not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            problems.append((f"{path}.{key}", f"unknown option for {kind} {name}{did_you_mean(key, allowed)} "
                                              f"(allowed: {listed})"))
        elif not value_fits(value, allowed[key]):
            problems.append((f"{path}.{key}", f"must be of type {allowed[key]} (got {show(value)})"))
        elif (name, key) in OPTION_MINIMUMS and _is_number(value):
            minimum, inclusive = OPTION_MINIMUMS[name, key]
            if value < minimum or (value == minimum and not inclusive):
                problems.append((f"{path}.{key}", f"must be {'>=' if inclusive else '>'} {minimum} (got {value})"))
    for key in required_options(cls, reserved):
        if key not in options:
            problems.append((path, f"{kind} {name} needs option {key}"))
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
