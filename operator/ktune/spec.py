"""The TuningJob schema: load, validate, fill defaults.

One source of truth for the TuningJob's fields, their defaults (`DEFAULTS`) and their rules.
`load_tuningjob` returns typed, frozen dataclasses; every problem in the input is collected and raised
at once as a `SpecError` whose lines read `spec.path[i].field: rule (got X)`.

Decisions worth knowing (the README's reference repeats them):
- parameter names are `[a-z][a-z0-9_]*` (they become `KTUNE_PARAM_<NAME>`), metric names `[a-z_][a-z0-9_]*`,
  both at most 63 characters;
- `objectives` (multi-objective) needs at least two entries and takes no `goal`; `goal` is for `objective`;
- a pruner on a multi-objective job needs `pruner.metric`, which must name one of the objectives; the
  pruner then judges trials on that metric alone;
- `maxFailedTrials` unset means no limit (failed trials still count towards `maxTrials`); when set, the
  job fails as soon as that many trials have failed;
- `high - low` must be a whole number of `step`s (Optuna would otherwise silently lower `high`);
- the grid sampler needs a `step` on every float parameter, and at most `MAX_GRID_POINTS` points.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

import yaml

from ktune import contract
from ktune.budget import GPU_RESOURCE, template_resources
from ktune.optuna_options import required_options, settable_options, value_fits
from ktune.pruners import PRUNER_CLASSES, RESERVED_PRUNER_OPTIONS, build_pruner
from ktune.samplers import RESERVED_SAMPLER_OPTIONS, SAMPLER_CLASSES, build_sampler, grid_size

API_VERSION = f"{contract.API_GROUP}/{contract.API_VERSION}"

# Every default of a TuningJob, in one place. The loader copies these into the manifest it returns.
DEFAULTS: dict[str, Any] = {
    "objective.direction": "maximize",
    "metrics": [],
    "parameter.log": False,
    "parameter.int.step": 1,
    "sampler": {"name": "tpe", "seed": None, "options": {}},
    "pruner": {"name": "none", "options": {}},
    "budget": {"maxTrials": 20, "parallelism": 1, "maxFailedTrials": None, "activeDeadlineSeconds": None,
               "maxGpuHours": None, "maxCpuHours": None},
    "trial": {"retries": 0, "metricsPort": contract.DEFAULT_METRICS_PORT},
    "metricsSource": {"type": "direct"},
    "warmStart": {"from": [], "enqueue": []},
}

MAX_NAME_LENGTH = 63
MAX_GRID_POINTS = 100_000
MAX_TRIALS_LIMIT = 100_000
MAX_RETRIES = 10
MAX_SEED = 2**32 - 1
# Bounds and steps beyond this lose integer precision in Optuna's float internals.
MAX_ABS_BOUND = 10**15
DIRECTIONS = ("maximize", "minimize")
PARAMETER_TYPES = ("float", "int", "categorical")
METRICS_SOURCE_TYPES = ("direct", "prometheus")
# Samplers that optimise one objective only (Optuna refuses or ignores the others).
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
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

_PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]*")
_METRIC_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SHOW_LIMIT = 60

_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
_SPEC_FIELDS = ("objective", "objectives", "metrics", "parameters", "sampler", "pruner", "budget", "trial",
                "metricsSource", "warmStart")
_OBJECTIVE_FIELDS = ("metric", "direction", "goal")
_PARAMETER_FIELDS = {
    "float": ("name", "type", "low", "high", "log", "step"),
    "int": ("name", "type", "low", "high", "log", "step"),
    "categorical": ("name", "type", "choices"),
}
_SAMPLER_FIELDS = ("name", "seed", "options")
_PRUNER_FIELDS = ("name", "options", "metric")
_BUDGET_FIELDS = ("maxTrials", "parallelism", "maxFailedTrials", "activeDeadlineSeconds", "maxGpuHours",
                  "maxCpuHours")
_WARM_START_FIELDS = ("from", "enqueue")
_JOB_REF_FIELDS = ("name", "namespace")
_TRIAL_FIELDS = ("retries", "metricsPort", "template")
_METRICS_SOURCE_FIELDS = ("type", "url")


class SpecError(ValueError):
    """A TuningJob that cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["maximize", "minimize"]
    goal: float | None = None


@dataclass(frozen=True)
class Parameter:
    """One searched parameter. `step` is None for a float without a step; ints default to step 1."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    seed: int | None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    """`metric` is what the pruner judges: pruner.metric, or the single objective's metric."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None


@dataclass(frozen=True)
class Budget:
    max_trials: int
    parallelism: int
    max_failed_trials: int | None
    active_deadline_seconds: int | None
    max_gpu_hours: float | None = None
    max_cpu_hours: float | None = None


@dataclass(frozen=True)
class TrialSpec:
    retries: int
    metrics_port: int
    template: dict[str, Any]


@dataclass(frozen=True)
class MetricsSource:
    type: Literal["direct", "prometheus"]
    url: str | None = None


@dataclass(frozen=True)
class JobRef:
    """An earlier TuningJob; namespace None means the new job's own namespace."""

    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class WarmStart:
    """Earlier jobs whose finished trials seed the study, and configurations to run first (maybe partial)."""

    sources: tuple[JobRef, ...] = ()
    enqueue: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class JobSpec:
    objectives: tuple[Objective, ...]
    metrics: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    sampler: SamplerSpec
    pruner: PrunerSpec
    budget: Budget
    trial: TrialSpec
    metrics_source: MetricsSource
    warm_start: WarmStart = WarmStart()

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def objective_metrics(self) -> tuple[str, ...]:
        return tuple(objective.metric for objective in self.objectives)

    @property
    def recorded_metrics(self) -> tuple[str, ...]:
        """Objective metrics, then the extra metrics, without duplicates."""
        return tuple(dict.fromkeys(self.objective_metrics + self.metrics))


@dataclass(frozen=True)
class TuningJob:
    name: str
    namespace: str | None
    spec: JobSpec
    manifest: dict[str, Any]


def show(value: Any) -> str:
    """A value as a problem message quotes it: short, with strings quoted and a type for containers."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, Mapping):
        text = "a mapping"
    elif isinstance(value, list | tuple):
        text = f"a list of {len(value)}"
    elif value is None:
        text = "null"
    else:
        text = repr(value)
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 3] + "..."


def did_you_mean(word: Any, candidates: Sequence[str] | Mapping[str, Any]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or an empty string."""
    if not isinstance(word, str):
        return ""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _type_hint(value: Any) -> str:
    """Why a value that looks like a number is not one (YAML 1.1 reads `1e-5` as a string)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return "; YAML reads it as a string, write 1.0e-5 rather than 1e-5"
    return ""


class _Checker:
    """Collects problems while it walks a TuningJob and fills in defaults."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, rule: str) -> None:
        self.problems.append(f"{path}: {rule}")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.problem(path, f"must be a mapping (got {show(value)})")
        return None

    def known_fields(self, value: Mapping[str, Any], path: str, allowed: Sequence[str],
                     context: str = "") -> None:
        for key in value:
            if key not in allowed:
                where = f" {context}" if context else ""
                self.problem(f"{path}.{key}" if isinstance(key, str) else path,
                             f"unknown field{where}{did_you_mean(key, allowed)} "
                             f"(allowed: {', '.join(allowed)})" if isinstance(key, str)
                             else f"field names must be strings (got {show(key)})")

    def name(self, value: Any, path: str, pattern: re.Pattern[str], what: str) -> bool:
        if not isinstance(value, str):
            self.problem(path, f"must be a string (got {show(value)})")
            return False
        if len(value) > MAX_NAME_LENGTH:
            self.problem(path, f"must be at most {MAX_NAME_LENGTH} characters (got {len(value)})")
            return False
        if not pattern.fullmatch(value):
            self.problem(path, f"{what} (got {show(value)})")
            return False
        return True

    def enum(self, value: Any, path: str, allowed: Sequence[str]) -> bool:
        if isinstance(value, str) and value in allowed:
            return True
        self.problem(path, f"must be one of {', '.join(allowed)} (got {show(value)}){did_you_mean(value, allowed)}")
        return False

    def integer(self, value: Any, path: str, low: int, high: int | None = None) -> bool:
        if not _is_int(value):
            self.problem(path, f"must be an integer (got {show(value)}){_type_hint(value)}")
            return False
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            self.problem(path, f"must be {bounds} (got {value})")
            return False
        return True

    def number(self, value: Any, path: str) -> bool:
        if _is_number(value):
            return True
        self.problem(path, f"must be a finite number (got {show(value)}){_type_hint(value)}")
        return False

    def boolean(self, value: Any, path: str) -> bool:
        if isinstance(value, bool):
            return True
        self.problem(path, f"must be true or false (got {show(value)})")
        return False

    def options(self, value: Any, path: str) -> dict[str, Any] | None:
        options = self.mapping(value, path)
        if options is None:
            return None
        bad_keys = [key for key in options if not isinstance(key, str)]
        for key in bad_keys:
            self.problem(path, f"option names must be strings (got {show(key)})")
        return None if bad_keys else dict(options)


def _check_objective(check: _Checker, raw: Any, path: str, allow_goal: bool) -> dict[str, Any] | None:
    objective = check.mapping(raw, path)
    if objective is None:
        return None
    check.known_fields(objective, path, _OBJECTIVE_FIELDS)
    ok = True
    if "metric" not in objective:
        check.problem(path, "metric is required")
        ok = False
    elif not check.name(objective["metric"], f"{path}.metric", _METRIC_NAME,
                        "must be a metric name matching [a-z_][a-z0-9_]*"):
        ok = False
    direction = objective.get("direction", DEFAULTS["objective.direction"])
    ok &= check.enum(direction, f"{path}.direction", DIRECTIONS)
    goal = objective.get("goal")
    if goal is not None:
        if not allow_goal:
            check.problem(f"{path}.goal", "goal is only supported with a single `objective`, not in `objectives`")
            ok = False
        else:
            ok &= check.number(goal, f"{path}.goal")
    if not ok:
        return None
    filled = {"metric": objective["metric"], "direction": direction}
    if goal is not None:
        filled["goal"] = goal
    return filled


def _check_objectives(check: _Checker, spec: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    has_single, has_many = "objective" in spec, "objectives" in spec
    if has_single and has_many:
        check.problem("spec", "set objective or objectives, not both")
        return None
    if not has_single and not has_many:
        check.problem("spec", "objective is required (or objectives for a multi-objective job)")
        return None
    if has_single:
        objective = _check_objective(check, spec["objective"], "spec.objective", allow_goal=True)
        return None if objective is None else [objective]
    raw = spec["objectives"]
    if not isinstance(raw, list):
        check.problem("spec.objectives", f"must be a list (got {show(raw)})")
        return None
    if len(raw) < 2:
        check.problem("spec.objectives", f"needs at least 2 objectives; use objective for one (got {len(raw)})")
        return None
    objectives = [_check_objective(check, item, f"spec.objectives[{i}]", allow_goal=False)
                  for i, item in enumerate(raw)]
    if any(objective is None for objective in objectives):
        return None
    seen: set[str] = set()
    for i, objective in enumerate(objectives):
        if objective["metric"] in seen:
            check.problem(f"spec.objectives[{i}].metric", f"duplicate metric (got {show(objective['metric'])})")
            return None
        seen.add(objective["metric"])
    return objectives


def _check_metrics(check: _Checker, raw: Any) -> list[str] | None:
    if not isinstance(raw, list):
        check.problem("spec.metrics", f"must be a list of metric names (got {show(raw)})")
        return None
    ok, seen = True, set()
    for i, metric in enumerate(raw):
        path = f"spec.metrics[{i}]"
        if not check.name(metric, path, _METRIC_NAME, "must be a metric name matching [a-z_][a-z0-9_]*"):
            ok = False
        elif metric in seen:
            check.problem(path, f"duplicate metric (got {show(metric)})")
            ok = False
        else:
            seen.add(metric)
    return list(raw) if ok else None


def _check_range(check: _Checker, parameter: Mapping[str, Any], path: str, kind: str) -> dict[str, Any] | None:
    """The numeric fields of a float or int parameter, filled; None when any is wrong."""
    ok = True
    for key in ("low", "high"):
        if key not in parameter:
            check.problem(path, f"{key} is required for {_article(kind)} {kind} parameter")
            ok = False
        elif kind == "int":
            if not _is_int(parameter[key]):
                check.problem(f"{path}.{key}", f"must be an integer for an int parameter "
                                               f"(got {show(parameter[key])}){_type_hint(parameter[key])}")
                ok = False
        else:
            ok &= check.number(parameter[key], f"{path}.{key}")
    log = parameter.get("log", DEFAULTS["parameter.log"])
    ok &= check.boolean(log, f"{path}.log")
    step = parameter.get("step")
    if step is not None:
        if kind == "int":
            ok &= check.integer(step, f"{path}.step", 1)
        elif check.number(step, f"{path}.step"):
            if step <= 0:
                check.problem(f"{path}.step", f"must be > 0 (got {step})")
                ok = False
        else:
            ok = False
    for key in ("low", "high", "step"):
        if ok and parameter.get(key) is not None and abs(parameter[key]) > MAX_ABS_BOUND:
            check.problem(f"{path}.{key}", f"must be between -{MAX_ABS_BOUND:.0e} and {MAX_ABS_BOUND:.0e} "
                                           f"(got {show(parameter[key])})")
            ok = False
    if not ok:
        return None
    low, high = parameter["low"], parameter["high"]
    if low >= high:
        check.problem(path, f"low must be < high (got {low} >= {high})")
        return None
    if log is True and step is not None:
        check.problem(path, "log and step cannot both be set (Optuna samples a log scale without steps)")
        return None
    if log is True and low <= 0:
        check.problem(path, f"low must be > 0 when log is true (got {low})")
        return None
    if step is not None:
        if step > high - low:
            check.problem(f"{path}.step", f"must be <= high - low (got {step} > {high - low})")
            return None
        steps = (high - low) / step
        if steps > MAX_ABS_BOUND:
            check.problem(f"{path}.step", f"too small: at most {MAX_ABS_BOUND:.0e} steps between low and high "
                                          f"(got {steps:.3g})")
            return None
        if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
            check.problem(path, f"high - low must be a whole number of steps (got ({high} - {low}) / {step} "
                                f"= {steps:.6g})")
            return None
    if kind == "int" and step is None:
        step = DEFAULTS["parameter.int.step"]
    filled = {"low": low, "high": high, "log": log}
    if step is not None:
        filled["step"] = step
    return filled


def _check_choices(check: _Checker, parameter: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    if "choices" not in parameter:
        check.problem(path, "choices is required for a categorical parameter")
        return None
    choices = parameter["choices"]
    if not isinstance(choices, list) or not choices:
        check.problem(f"{path}.choices", f"must be a non-empty list (got {show(choices)})")
        return None
    ok = True
    for i, choice in enumerate(choices):
        if isinstance(choice, float) and not math.isfinite(choice):
            check.problem(f"{path}.choices[{i}]", f"must be a finite number (got {show(choice)})")
            ok = False
        elif not isinstance(choice, str | int | float | bool):
            check.problem(f"{path}.choices[{i}]", f"must be a string, number or boolean (got {show(choice)})")
            ok = False
        elif any(choice == earlier for earlier in choices[:i]):
            check.problem(f"{path}.choices[{i}]", f"duplicate choice (got {show(choice)})")
            ok = False
    return {"choices": list(choices)} if ok else None


def _check_parameter(check: _Checker, raw: Any, path: str) -> dict[str, Any] | None:
    parameter = check.mapping(raw, path)
    if parameter is None:
        return None
    kind = parameter.get("type")
    if "type" not in parameter:
        check.problem(path, f"type is required (one of {', '.join(PARAMETER_TYPES)})")
        check.known_fields(parameter, path, sorted({f for fs in _PARAMETER_FIELDS.values() for f in fs}))
        return None
    if not check.enum(kind, f"{path}.type", PARAMETER_TYPES):
        return None
    allowed = _PARAMETER_FIELDS[kind]
    check.known_fields(parameter, path, allowed, context=f"for {_article(kind)} {kind} parameter")
    name_ok = "name" in parameter
    if not name_ok:
        check.problem(path, "name is required")
    else:
        name_ok = check.name(parameter["name"], f"{path}.name", _PARAMETER_NAME,
                             "must match [a-z][a-z0-9_]* (it becomes the suffix of KTUNE_PARAM_<NAME>)")
    body = _check_choices(check, parameter, path) if kind == "categorical" else _check_range(
        check, parameter, path, kind)
    if not name_ok or body is None or any(key not in allowed for key in parameter):
        return None
    return {"name": parameter["name"], "type": kind, **body}


def _check_parameters(check: _Checker, spec: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    if "parameters" not in spec:
        check.problem("spec", "parameters is required (a non-empty list)")
        return None
    raw = spec["parameters"]
    if not isinstance(raw, list) or not raw:
        check.problem("spec.parameters", f"must be a non-empty list (got {show(raw)})")
        return None
    parameters = [_check_parameter(check, item, f"spec.parameters[{i}]") for i, item in enumerate(raw)]
    names: dict[str, int] = {}
    for i, parameter in enumerate(parameters):
        if parameter is None:
            continue
        if parameter["name"] in names:
            check.problem(f"spec.parameters[{i}].name",
                          f"duplicate parameter name (got {show(parameter['name'])}, "
                          f"also spec.parameters[{names[parameter['name']]}])")
            parameters[i] = None
        else:
            names[parameter["name"]] = i
    return None if any(p is None for p in parameters) else parameters


def _check_options(check: _Checker, path: str, kind: str, name: str, cls: type, options: Mapping[str, Any],
                   reserved: frozenset[str]) -> bool:
    """Options of the sampler/pruner `name` against its Optuna constructor (`kind`: sampler or pruner)."""
    allowed = settable_options(cls, reserved)
    count = len(check.problems)
    for key, value in options.items():
        if key == "seed" and key in reserved:
            check.problem(f"{path}.{key}", "set by ktune, not an option (use spec.sampler.seed)")
        elif key in reserved:
            check.problem(f"{path}.{key}", "set by ktune from spec.parameters, not an option")
        elif (name, key) in IGNORED_OPTIONS:
            check.problem(f"{path}.{key}", f"Optuna ignores this option ({IGNORED_OPTIONS[name, key]}); remove it")
        elif key not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            check.problem(f"{path}.{key}", f"unknown option for {kind} {name}{did_you_mean(key, allowed)} "
                                           f"(allowed: {listed})")
        elif not value_fits(value, allowed[key]):
            check.problem(f"{path}.{key}", f"must be of type {allowed[key]} (got {show(value)})")
        elif (name, key) in OPTION_MINIMUMS and _is_number(value):
            minimum, inclusive = OPTION_MINIMUMS[name, key]
            if value < minimum or (value == minimum and not inclusive):
                check.problem(f"{path}.{key}", f"must be {'>=' if inclusive else '>'} {minimum} (got {value})")
    for key in required_options(cls, reserved):
        if key not in options:
            check.problem(path, f"{kind} {name} needs option {key}")
    return len(check.problems) == count


def _check_sampler(check: _Checker, raw: Any) -> dict[str, Any] | None:
    sampler = check.mapping(raw, "spec.sampler")
    if sampler is None:
        return None
    check.known_fields(sampler, "spec.sampler", _SAMPLER_FIELDS)
    filled = copy.deepcopy(DEFAULTS["sampler"]) | dict(sampler)
    ok = check.enum(filled["name"], "spec.sampler.name", tuple(SAMPLER_CLASSES))
    if filled["seed"] is not None:
        ok &= check.integer(filled["seed"], "spec.sampler.seed", 0, MAX_SEED)
    options = check.options(filled["options"], "spec.sampler.options")
    if not ok or options is None:
        return None
    options_ok = _check_options(check, "spec.sampler.options", "sampler", filled["name"],
                                SAMPLER_CLASSES[filled["name"]], options, RESERVED_SAMPLER_OPTIONS)
    if not options_ok or any(key not in _SAMPLER_FIELDS for key in sampler):
        return None
    return {"name": filled["name"], "seed": filled["seed"], "options": options}


def _check_pruner(check: _Checker, raw: Any, objectives: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    pruner = check.mapping(raw, "spec.pruner")
    if pruner is None:
        return None
    check.known_fields(pruner, "spec.pruner", _PRUNER_FIELDS)
    filled = copy.deepcopy(DEFAULTS["pruner"]) | dict(pruner)
    if not check.enum(filled["name"], "spec.pruner.name", tuple(PRUNER_CLASSES)):
        return None
    options = check.options(filled["options"], "spec.pruner.options")
    if options is None:
        return None
    options_ok = _check_options(check, "spec.pruner.options", "pruner", filled["name"],
                                PRUNER_CLASSES[filled["name"]], options, RESERVED_PRUNER_OPTIONS)
    metric = filled.get("metric")
    metric_ok = True
    if metric is not None:
        metric_ok = check.name(metric, "spec.pruner.metric", _METRIC_NAME,
                               "must be a metric name matching [a-z_][a-z0-9_]*")
    if objectives is None or not options_ok or not metric_ok or any(key not in _PRUNER_FIELDS for key in pruner):
        return None
    objective_metrics = [objective["metric"] for objective in objectives]
    if metric is not None and metric not in objective_metrics:
        check.problem("spec.pruner.metric", f"must name one of the objectives' metrics "
                                            f"({', '.join(objective_metrics)}) (got {show(metric)})")
        return None
    if len(objectives) > 1 and filled["name"] != "none" and metric is None:
        check.problem("spec.pruner", "a multi-objective job prunes on one metric: set pruner.metric to one of "
                                     f"{', '.join(objective_metrics)}, or use pruner none")
        return None
    result = {"name": filled["name"], "options": options}
    if metric is not None:
        result["metric"] = metric
    return result


def _check_budget(check: _Checker, raw: Any) -> dict[str, Any] | None:
    budget = check.mapping(raw, "spec.budget")
    if budget is None:
        return None
    check.known_fields(budget, "spec.budget", _BUDGET_FIELDS)
    filled = copy.deepcopy(DEFAULTS["budget"]) | dict(budget)
    ok = check.integer(filled["maxTrials"], "spec.budget.maxTrials", 1, MAX_TRIALS_LIMIT)
    ok &= check.integer(filled["parallelism"], "spec.budget.parallelism", 1, MAX_TRIALS_LIMIT)
    for key in ("maxFailedTrials", "activeDeadlineSeconds"):
        if filled[key] is not None:
            ok &= check.integer(filled[key], f"spec.budget.{key}", 1)
    for key in ("maxGpuHours", "maxCpuHours"):
        if filled[key] is not None and check.number(filled[key], f"spec.budget.{key}") and filled[key] <= 0:
            check.problem(f"spec.budget.{key}", f"must be > 0 hours (got {filled[key]})")
            ok = False
        elif filled[key] is not None:
            ok &= _is_number(filled[key])
    if ok and filled["parallelism"] > filled["maxTrials"]:
        check.problem("spec.budget", f"parallelism must be <= maxTrials "
                                     f"(got {filled['parallelism']} > {filled['maxTrials']})")
        ok = False
    if not ok or any(key not in _BUDGET_FIELDS for key in budget):
        return None
    return {key: filled[key] for key in _BUDGET_FIELDS}


def _check_containers(check: _Checker, template: Mapping[str, Any]) -> bool:
    pod_spec = check.mapping(template.get("spec"), "spec.trial.template.spec")
    if pod_spec is None:
        return False
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        check.problem("spec.trial.template.spec.containers", f"must be a non-empty list (got {show(containers)})")
        return False
    ok, names = True, set()
    for i, raw in enumerate(containers):
        path = f"spec.trial.template.spec.containers[{i}]"
        container = check.mapping(raw, path)
        if container is None:
            ok = False
            continue
        name = container.get("name")
        if name is None:
            check.problem(path, "name is required")
            ok = False
        elif check.name(name, f"{path}.name", _DNS_LABEL, "must be a DNS label: [a-z0-9] and '-'"):
            if name in names:
                check.problem(f"{path}.name", f"duplicate container name (got {show(name)})")
                ok = False
            names.add(name)
        else:
            ok = False
        if "command" not in container and "image" not in container:
            check.problem(path, "needs a command (to run locally) or an image (to run on Kubernetes)")
            ok = False
        command = container.get("command")
        if command is not None and (not isinstance(command, list) or not command
                                    or not all(isinstance(part, str) for part in command)):
            check.problem(f"{path}.command", f"must be a non-empty list of strings (got {show(command)})")
            ok = False
        args = container.get("args")
        if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
            check.problem(f"{path}.args", f"must be a list of strings (got {show(args)}); "
                                          "quote numbers in YAML")
            ok = False
    return ok


def _check_trial(check: _Checker, raw: Any) -> dict[str, Any] | None:
    trial = check.mapping(raw, "spec.trial")
    if trial is None:
        return None
    check.known_fields(trial, "spec.trial", _TRIAL_FIELDS)
    filled = copy.deepcopy(DEFAULTS["trial"]) | dict(trial)
    ok = check.integer(filled["retries"], "spec.trial.retries", 0, MAX_RETRIES)
    ok &= check.integer(filled["metricsPort"], "spec.trial.metricsPort", 1, 65535)
    if "template" not in trial:
        check.problem("spec.trial", "template is required (a PodTemplateSpec with at least one container)")
        return None
    template = check.mapping(trial["template"], "spec.trial.template")
    if template is None or not _check_containers(check, template) or not ok:
        return None
    if any(key not in _TRIAL_FIELDS for key in trial):
        return None
    return {"retries": filled["retries"], "metricsPort": filled["metricsPort"], "template": copy.deepcopy(template)}


def _check_metrics_source(check: _Checker, raw: Any) -> dict[str, Any] | None:
    source = check.mapping(raw, "spec.metricsSource")
    if source is None:
        return None
    check.known_fields(source, "spec.metricsSource", _METRICS_SOURCE_FIELDS)
    kind = source.get("type", DEFAULTS["metricsSource"]["type"])
    if not check.enum(kind, "spec.metricsSource.type", METRICS_SOURCE_TYPES):
        return None
    url = source.get("url")
    if kind == "direct":
        if url is not None:
            check.problem("spec.metricsSource.url", "only for type prometheus (type direct scrapes each trial)")
            return None
        return {"type": kind}
    if url is None:
        check.problem("spec.metricsSource", "url is required for type prometheus (e.g. http://prometheus:9090)")
        return None
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        check.problem("spec.metricsSource.url", f"must be an http:// or https:// URL (got {show(url)})")
        return None
    return {"type": kind, "url": url}


def _check_job_ref(check: _Checker, raw: Any, path: str) -> dict[str, Any] | None:
    ref = check.mapping(raw, path)
    if ref is None:
        return None
    check.known_fields(ref, path, _JOB_REF_FIELDS)
    if "name" not in ref:
        check.problem(path, "name is required (the earlier TuningJob's metadata.name)")
        return None
    ok = check.name(ref["name"], f"{path}.name", _DNS_LABEL, "must be a TuningJob name (a DNS label)")
    if ref.get("namespace") is not None:
        ok &= check.name(ref["namespace"], f"{path}.namespace", _DNS_LABEL, "must be a namespace (a DNS label)")
    if not ok or any(key not in _JOB_REF_FIELDS for key in ref):
        return None
    return {key: ref[key] for key in _JOB_REF_FIELDS if ref.get(key) is not None}


def value_in_space(parameter: Parameter, value: Any) -> bool:
    """Whether `value` is one the parameter can take: a choice, or a number within bounds and on the step."""
    if parameter.type == "categorical":
        return any(value == choice and type(value) is type(choice) for choice in parameter.choices)
    if not _is_number(value) or (parameter.type == "int" and not float(value).is_integer()):
        return False
    if not parameter.low <= value <= parameter.high:
        return False
    if parameter.step is None:
        return True
    steps = (value - parameter.low) / parameter.step
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))


def _check_enqueued(check: _Checker, raw: Any, path: str, parameters: tuple[Parameter, ...]) -> bool:
    entry = check.mapping(raw, path)
    if entry is None:
        return False
    if not entry:
        check.problem(path, "must set at least one parameter")
        return False
    by_name = {parameter.name: parameter for parameter in parameters}
    ok = True
    for name, value in entry.items():
        parameter = by_name.get(name)
        if parameter is None:
            check.problem(f"{path}.{name}" if isinstance(name, str) else path,
                          f"not a parameter of this job{did_you_mean(name, by_name)} (parameters: "
                          f"{', '.join(by_name)})")
            ok = False
        elif not value_in_space(parameter, value):
            space = (f"one of {', '.join(show(c) for c in parameter.choices)}" if parameter.type == "categorical"
                     else f"{_article(parameter.type)} {parameter.type} in [{parameter.low}, {parameter.high}]"
                          + (f" on steps of {parameter.step}" if parameter.step is not None else ""))
            check.problem(f"{path}.{name}", f"must be {space} (got {show(value)})")
            ok = False
    return ok


def _check_warm_start(check: _Checker, raw: Any, parameters: tuple[Parameter, ...] | None,
                      budget: dict[str, Any] | None) -> dict[str, Any] | None:
    warm_start = check.mapping(raw, "spec.warmStart")
    if warm_start is None:
        return None
    check.known_fields(warm_start, "spec.warmStart", _WARM_START_FIELDS)
    filled = copy.deepcopy(DEFAULTS["warmStart"]) | dict(warm_start)
    ok = True
    for key in _WARM_START_FIELDS:
        if not isinstance(filled[key], list):
            check.problem(f"spec.warmStart.{key}", f"must be a list (got {show(filled[key])})")
            ok = False
    if not ok:
        return None
    sources = [_check_job_ref(check, ref, f"spec.warmStart.from[{i}]") for i, ref in enumerate(filled["from"])]
    ok = all(source is not None for source in sources)
    if parameters is not None:
        ok &= all([_check_enqueued(check, entry, f"spec.warmStart.enqueue[{i}]", parameters)
                   for i, entry in enumerate(filled["enqueue"])])
    if budget is not None and len(filled["enqueue"]) > budget["maxTrials"]:
        check.problem("spec.warmStart.enqueue", f"at most maxTrials entries (got {len(filled['enqueue'])} > "
                                                f"{budget['maxTrials']})")
        ok = False
    if not ok or parameters is None or any(key not in _WARM_START_FIELDS for key in warm_start):
        return None
    return {"from": sources, "enqueue": [dict(entry) for entry in filled["enqueue"]]}


def _check_hour_budgets(check: _Checker, budget: dict[str, Any], trial: dict[str, Any]) -> None:
    """An hour budget needs requests it can read: quantities that parse, and GPUs for maxGpuHours."""
    if budget["maxGpuHours"] is None and budget["maxCpuHours"] is None:
        return
    try:
        resources = template_resources(trial["template"])
    except ValueError as error:
        check.problem("spec.trial.template.spec.containers", f"resources: {error} (needed to account "
                                                             "spec.budget's hours)")
        return
    if budget["maxGpuHours"] is not None and resources.gpus == 0:
        check.problem("spec.budget.maxGpuHours", f"the trial template requests no {GPU_RESOURCE}: set "
                                                 f"resources.limits.{GPU_RESOURCE} on its containers, or use "
                                                 "maxCpuHours")


def _parameters_from(filled: list[dict[str, Any]]) -> tuple[Parameter, ...]:
    return tuple(
        Parameter(name=p["name"], type=p["type"], choices=tuple(p["choices"]))
        if p["type"] == "categorical"
        else Parameter(name=p["name"], type=p["type"], low=p["low"], high=p["high"], log=p["log"],
                       step=p.get("step"))
        for p in filled
    )


def _check_sampler_fits(check: _Checker, sampler: dict[str, Any], parameters: tuple[Parameter, ...],
                        objectives: list[dict[str, Any]]) -> None:
    """Rules that join the sampler with the parameters and objectives; then Optuna's own checks."""
    name = sampler["name"]
    if name in SINGLE_OBJECTIVE_SAMPLERS and len(objectives) > 1:
        check.problem("spec.sampler.name", f"{name} optimises a single objective; use tpe, nsga2, random, qmc "
                                           "or gp for objectives")
        return
    if name == "grid":
        stepless = [i for i, p in enumerate(parameters) if p.type == "float" and p.step is None]
        for i in stepless:
            check.problem(f"spec.parameters[{i}]", "grid sampler needs a step on every float parameter")
        if stepless:
            return
        points = grid_size(parameters)
        if points > MAX_GRID_POINTS:
            check.problem("spec.parameters", f"grid has too many points: at most {MAX_GRID_POINTS} (got {points})")
            return
    _check_builds(check, "spec.sampler.options",
                  lambda: build_sampler(name, sampler["options"], sampler["seed"], parameters))


def _check_builds(check: _Checker, path: str, build: Callable[[], Any]) -> None:
    """Construct the Optuna object once, so that the values its constructor refuses are named now."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build()
    except Exception as error:  # Optuna's constructors raise ValueError/TypeError/AssertionError on bad values
        check.problem(path, f"refused by Optuna: {error}")


def _check_pruner_builds(check: _Checker, pruner: dict[str, Any]) -> None:
    _check_builds(check, "spec.pruner.options",
                  lambda: build_pruner(pruner["name"], pruner["options"]))


def _check_metadata(check: _Checker, obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if obj.get("apiVersion") != API_VERSION:
        check.problem("apiVersion", f"must be {API_VERSION} (got {show(obj.get('apiVersion'))})")
    if obj.get("kind") != contract.TUNINGJOB_KIND:
        check.problem("kind", f"must be {contract.TUNINGJOB_KIND} (got {show(obj.get('kind'))})")
    metadata = check.mapping(obj.get("metadata"), "metadata")
    if metadata is None:
        return None, None
    name = metadata.get("name")
    if name is None:
        check.problem("metadata", "name is required")
        name = None
    elif not check.name(name, "metadata.name", _DNS_LABEL,
                        "must be a DNS label: lower-case letters, digits and '-', starting and ending alphanumeric"):
        name = None
    namespace = metadata.get("namespace")
    if namespace is not None and not check.name(namespace, "metadata.namespace", _DNS_LABEL,
                                                "must be a DNS label: lower-case letters, digits and '-'"):
        namespace = None
    return name, namespace


def _check_and_fill(obj: Any) -> tuple[list[str], TuningJob | None]:
    check = _Checker()
    top = check.mapping(obj, "TuningJob")
    if top is None:
        return check.problems, None
    check.known_fields(top, "TuningJob", _TOP_FIELDS)
    name, namespace = _check_metadata(check, top)
    spec = check.mapping(top.get("spec"), "spec")
    if spec is None:
        return check.problems, None
    check.known_fields(spec, "spec", _SPEC_FIELDS)
    objectives = _check_objectives(check, spec)
    metrics = _check_metrics(check, spec.get("metrics", DEFAULTS["metrics"]))
    parameters = _check_parameters(check, spec)
    sampler = _check_sampler(check, spec.get("sampler", {}))
    pruner = _check_pruner(check, spec.get("pruner", {}), objectives)
    budget = _check_budget(check, spec.get("budget", {}))
    trial = _check_trial(check, spec["trial"]) if "trial" in spec else None
    if "trial" not in spec:
        check.problem("spec", "trial is required (with a template: a PodTemplateSpec)")
    source = _check_metrics_source(check, spec.get("metricsSource", {}))
    typed_parameters = _parameters_from(parameters) if parameters is not None else None
    if sampler is not None and typed_parameters is not None and objectives is not None:
        _check_sampler_fits(check, sampler, typed_parameters, objectives)
    if pruner is not None:
        _check_pruner_builds(check, pruner)
    if budget is not None and trial is not None:
        _check_hour_budgets(check, budget, trial)
    warm_start = _check_warm_start(check, spec["warmStart"], typed_parameters, budget) if "warmStart" in spec \
        else copy.deepcopy(DEFAULTS["warmStart"])
    parts = (name, objectives, metrics, typed_parameters, sampler, pruner, budget, trial, source, warm_start)
    if check.problems or any(part is None for part in parts):
        return check.problems, None
    filled_spec = {"objective" if len(objectives) == 1 else "objectives":
                   objectives[0] if len(objectives) == 1 else objectives,
                   "metrics": metrics, "parameters": parameters, "sampler": sampler, "pruner": pruner,
                   "budget": budget, "trial": trial, "metricsSource": source}
    if "warmStart" in spec:
        filled_spec["warmStart"] = warm_start
    manifest = copy.deepcopy(dict(top)) | {"spec": copy.deepcopy(filled_spec)}
    job_spec = JobSpec(
        objectives=tuple(Objective(o["metric"], o["direction"], o.get("goal")) for o in objectives),
        metrics=tuple(metrics),
        parameters=typed_parameters,
        sampler=SamplerSpec(sampler["name"], sampler["seed"], dict(sampler["options"])),
        pruner=PrunerSpec(pruner["name"], dict(pruner["options"]),
                          pruner.get("metric", objectives[0]["metric"] if len(objectives) == 1 else None)),
        budget=Budget(budget["maxTrials"], budget["parallelism"], budget["maxFailedTrials"],
                      budget["activeDeadlineSeconds"], budget["maxGpuHours"], budget["maxCpuHours"]),
        trial=TrialSpec(trial["retries"], trial["metricsPort"], trial["template"]),
        metrics_source=MetricsSource(source["type"], source.get("url")),
        warm_start=WarmStart(tuple(JobRef(ref["name"], ref.get("namespace")) for ref in warm_start["from"]),
                             tuple(dict(entry) for entry in warm_start["enqueue"])),
    )
    return [], TuningJob(name=name, namespace=namespace, spec=job_spec, manifest=manifest)


def validate_tuningjob(obj: Mapping[str, Any]) -> list[str]:
    """Every problem with a parsed TuningJob object; an empty list when it is valid."""
    problems, _ = _check_and_fill(obj)
    return problems


def _yaml_error_text(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _read_yaml(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as stream:
            documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    except OSError as error:
        raise SpecError([f"{os.fspath(path)}: cannot read: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise SpecError([f"{os.fspath(path)}: not UTF-8 text: {error.reason}"]) from None
    except yaml.YAMLError as error:
        raise SpecError([f"{os.fspath(path)}: not valid YAML: {_yaml_error_text(error)}"]) from None
    except RecursionError:
        raise SpecError([f"{os.fspath(path)}: nested too deeply to be a TuningJob"]) from None
    if len(documents) != 1:
        raise SpecError([f"{os.fspath(path)}: must hold exactly one TuningJob document (got {len(documents)})"])
    return documents[0]


def load_tuningjob(source: str | os.PathLike[str] | Mapping[str, Any]) -> TuningJob:
    """A TuningJob from a YAML file path or a parsed object, with defaults filled; SpecError lists all problems."""
    if isinstance(source, Mapping):
        obj: Any = source
    elif isinstance(source, str | os.PathLike):
        obj = _read_yaml(source)
    else:
        raise SpecError([f"TuningJob: must be a mapping or a file path (got {show(source)})"])
    try:
        problems, job = _check_and_fill(obj)
    except RecursionError:
        raise SpecError(["TuningJob: nested too deeply"]) from None
    if job is None:
        raise SpecError(problems or ["TuningJob: invalid"])
    return job


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def validate_files(paths: Sequence[str | os.PathLike[str]]) -> int:
    """`ktune validate`: print each file's verdict and problems; 0 when every file is valid, else 1."""
    failed = 0
    for path in paths:
        try:
            job = load_tuningjob(path)
        except SpecError as error:
            failed += 1
            print(f"{os.fspath(path)}: invalid ({_count(len(error.problems), 'problem')})")
            for problem in error.problems:
                print(f"  {problem}")
        else:
            print(f"{os.fspath(path)}: valid TuningJob {job.name} ({_count(len(job.spec.parameters), 'parameter')}, "
                  f"sampler {job.spec.sampler.name}, pruner {job.spec.pruner.name})")
    return 1 if failed else 0
