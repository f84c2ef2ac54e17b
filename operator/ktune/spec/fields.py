"""Checks of the TuningJob's sections other than the search space: metadata, objectives, metrics,
sampler and pruner names, budget and metrics source (the trial: `ktune.spec.trial`).

What a sampler or pruner accepts as options is not known here: `AlgorithmRules` (implemented by
`ktune.algorithms`) answers for them, so this layer stays free of Optuna.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from ktune import contract
from ktune.spec.algorithm_rules import AlgorithmRules
from ktune.spec.checker import DNS_LABEL, METRIC_NAME, Checker, is_number, show
from ktune.spec.model import (
    API_VERSION,
    DEFAULT_STEP_METRIC,
    DEFAULTS,
    DIRECTIONS,
    KATIB_DEFAULT_FILTER,
    LOG_FORMATS,
    MAX_FILTER_LENGTH,
    MAX_SEED,
    MAX_TRIALS_LIMIT,
    METRICS_SOURCE_TYPES,
)

TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
SPEC_FIELDS = ("objective", "objectives", "metrics", "parameters", "sampler", "pruner", "budget", "trial",
                "metricsSource", "warmStart", "suspend")
_OBJECTIVE_FIELDS = ("metric", "direction", "goal")
_SAMPLER_FIELDS = ("name", "seed", "options")
_PRUNER_FIELDS = ("name", "options", "metric")
_BUDGET_FIELDS = ("maxTrials", "parallelism", "maxFailedTrials", "activeDeadlineSeconds", "maxGpuHours",
                  "maxCpuHours")
_LOG_SOURCE_FIELDS = ("format", "filter", "stepMetric")
_METRICS_SOURCE_FIELDS = ("type", "url", *_LOG_SOURCE_FIELDS)
STEP_METRIC_NAME = re.compile(r"[\w.|-]{1,63}")


def check_metadata(check: Checker, obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
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
    elif not check.name(name, "metadata.name", DNS_LABEL,
                        "must be a DNS label: lower-case letters, digits and '-', starting and ending alphanumeric"):
        name = None
    namespace = metadata.get("namespace")
    if namespace is not None and not check.name(namespace, "metadata.namespace", DNS_LABEL,
                                                "must be a DNS label: lower-case letters, digits and '-'"):
        namespace = None
    return name, namespace


def _check_objective(check: Checker, raw: Any, path: str, allow_goal: bool) -> dict[str, Any] | None:
    objective = check.mapping(raw, path)
    if objective is None:
        return None
    check.known_fields(objective, path, _OBJECTIVE_FIELDS)
    ok = True
    if "metric" not in objective:
        check.problem(path, "metric is required")
        ok = False
    elif not check.name(objective["metric"], f"{path}.metric", METRIC_NAME,
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


def check_objectives(check: Checker, spec: Mapping[str, Any]) -> list[dict[str, Any]] | None:
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
    checked = [_check_objective(check, item, f"spec.objectives[{i}]", allow_goal=False)
               for i, item in enumerate(raw)]
    objectives = [objective for objective in checked if objective is not None]
    if len(objectives) < len(checked):
        return None
    seen: set[str] = set()
    for i, objective in enumerate(objectives):
        if objective["metric"] in seen:
            check.problem(f"spec.objectives[{i}].metric", f"duplicate metric (got {show(objective['metric'])})")
            return None
        seen.add(objective["metric"])
    return objectives


def check_metrics(check: Checker, raw: Any) -> list[str] | None:
    if not isinstance(raw, list):
        check.problem("spec.metrics", f"must be a list of metric names (got {show(raw)})")
        return None
    ok, seen = True, set()
    for i, metric in enumerate(raw):
        path = f"spec.metrics[{i}]"
        if not check.name(metric, path, METRIC_NAME, "must be a metric name matching [a-z_][a-z0-9_]*"):
            ok = False
        elif metric in seen:
            check.problem(path, f"duplicate metric (got {show(metric)})")
            ok = False
        else:
            seen.add(metric)
    return list(raw) if ok else None


def check_sampler(check: Checker, raw: Any, rules: AlgorithmRules) -> dict[str, Any] | None:
    sampler = check.mapping(raw, "spec.sampler")
    if sampler is None:
        return None
    check.known_fields(sampler, "spec.sampler", _SAMPLER_FIELDS)
    filled = copy.deepcopy(DEFAULTS["sampler"]) | dict(sampler)
    why_not = rules.unavailable_samplers.get(filled["name"]) if isinstance(filled["name"], str) else None
    if why_not is not None:
        check.problem("spec.sampler.name", why_not)
    ok = why_not is None and check.enum(filled["name"], "spec.sampler.name", rules.sampler_names)
    if filled["seed"] is not None:
        ok &= check.integer(filled["seed"], "spec.sampler.seed", 0, MAX_SEED)
    options = check.options(filled["options"], "spec.sampler.options")
    if not ok or options is None:
        return None
    options_ok = check.all(rules.sampler_option_problems(filled["name"], options, "spec.sampler.options"))
    if not options_ok or any(key not in _SAMPLER_FIELDS for key in sampler):
        return None
    return {"name": filled["name"], "seed": filled["seed"], "options": options}


def check_pruner(check: Checker, raw: Any, objectives: list[dict[str, Any]] | None,
                 rules: AlgorithmRules) -> dict[str, Any] | None:
    pruner = check.mapping(raw, "spec.pruner")
    if pruner is None:
        return None
    check.known_fields(pruner, "spec.pruner", _PRUNER_FIELDS)
    filled = copy.deepcopy(DEFAULTS["pruner"]) | dict(pruner)
    if not check.enum(filled["name"], "spec.pruner.name", rules.pruner_names):
        return None
    options = check.options(filled["options"], "spec.pruner.options")
    if options is None:
        return None
    options_ok = check.all(rules.pruner_option_problems(filled["name"], options, "spec.pruner.options"))
    metric = filled.get("metric")
    metric_ok = True
    if metric is not None:
        metric_ok = check.name(metric, "spec.pruner.metric", METRIC_NAME,
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


def check_budget(check: Checker, raw: Any) -> dict[str, Any] | None:
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
            ok &= is_number(filled[key])
    if ok and filled["parallelism"] > filled["maxTrials"]:
        check.problem("spec.budget", f"parallelism must be <= maxTrials "
                                     f"(got {filled['parallelism']} > {filled['maxTrials']})")
        ok = False
    if not ok or any(key not in _BUDGET_FIELDS for key in budget):
        return None
    return {key: filled[key] for key in _BUDGET_FIELDS}


def check_metrics_source(check: Checker, raw: Any) -> dict[str, Any] | None:
    source = check.mapping(raw, "spec.metricsSource")
    if source is None:
        return None
    check.known_fields(source, "spec.metricsSource", _METRICS_SOURCE_FIELDS)
    kind = source.get("type", DEFAULTS["metricsSource"]["type"])
    if not check.enum(kind, "spec.metricsSource.type", METRICS_SOURCE_TYPES):
        return None
    misplaced = [key for key in _LOG_SOURCE_FIELDS if key in source] if kind != "logs" else []
    if "url" in source and kind != "prometheus":
        misplaced.append("url")
    for key in misplaced:
        owner = "prometheus" if key == "url" else "logs"
        check.problem(f"spec.metricsSource.{key}", f"only for type {owner} (this source is type {kind}): remove it, "
                                                   f"or set type: {owner}")
    if misplaced:
        return None
    if kind == "direct":
        return {"type": kind}
    if kind == "logs":
        return _check_log_source(check, source)
    url = source.get("url")
    if url is None:
        check.problem("spec.metricsSource", "url is required for type prometheus (e.g. http://prometheus:9090)")
        return None
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        check.problem("spec.metricsSource.url", f"must be an http:// or https:// URL (got {show(url)})")
        return None
    return {"type": kind, "url": url}


def _check_log_source(check: Checker, source: Mapping[str, Any]) -> dict[str, Any] | None:
    """type logs: the line format (both tried when unset), Katib's name=value filter, the step's name."""
    filled: dict[str, Any] = {"type": "logs", "stepMetric": source.get("stepMetric", DEFAULT_STEP_METRIC)}
    ok = True
    if "format" in source:
        ok &= check.enum(source["format"], "spec.metricsSource.format", LOG_FORMATS)
        filled["format"] = source["format"]
    if "filter" in source:
        problem = filter_problem(source["filter"])
        if problem:
            check.problem("spec.metricsSource.filter", problem)
            ok = False
        filled["filter"] = source["filter"]
        if source.get("format") == "json":
            check.problem("spec.metricsSource.filter", "only applies to format katib (JSON lines are read by key): "
                                                       "remove it, or remove format to try both")
            ok = False
    step = filled["stepMetric"]
    if not isinstance(step, str) or not STEP_METRIC_NAME.fullmatch(step):
        check.problem("spec.metricsSource.stepMetric", "must be the name of the step in the trainer's lines, 1-63 "
                                                       f"letters, digits, '_', '-', '.' or '|', e.g. epoch (got "
                                                       f"{show(step)})")
        ok = False
    return filled if ok else None


def filter_problem(value: Any) -> str | None:
    """Why a Katib-style filter cannot be used, or None: a Python regular expression with a group for the
    metric's name and one for its value (Katib's default has more groups inside the value's)."""
    if not isinstance(value, str) or not value:
        return f"must be a regular expression (got {show(value)})"
    if len(value) > MAX_FILTER_LENGTH:
        return f"must be at most {MAX_FILTER_LENGTH} characters (got {len(value)})"
    try:
        pattern = re.compile(value)
    except re.error as error:
        return f"is not a valid regular expression: {error} (got {show(value)})"
    if pattern.groups < 2:
        return ("must have two groups, the metric's name then its value, as Katib's default "
                f"{KATIB_DEFAULT_FILTER} (got {pattern.groups} in {show(value)})")
    return None
