"""The search space of a TuningJob: its parameters, and the warm start that seeds it.

Rules worth knowing: parameter names are `[a-z][a-z0-9_]*` (they become `KTUNE_PARAM_<NAME>`);
`high - low` must be a whole number of `step`s (Optuna would otherwise silently lower `high`);
`log` and `step` exclude each other; enqueued configurations must lie inside the space.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from ktune.spec.checker import (
    DNS_LABEL,
    PARAMETER_NAME,
    Checker,
    article,
    did_you_mean,
    is_int,
    is_number,
    show,
    type_hint,
)
from ktune.spec.model import DEFAULTS, MAX_ABS_BOUND, PARAMETER_TYPES, Parameter

_PARAMETER_FIELDS = {
    "float": ("name", "type", "low", "high", "log", "step"),
    "int": ("name", "type", "low", "high", "log", "step"),
    "categorical": ("name", "type", "choices"),
}
_WARM_START_FIELDS = ("from", "enqueue")
_JOB_REF_FIELDS = ("name", "namespace")


def _check_range(check: Checker, parameter: Mapping[str, Any], path: str, kind: str) -> dict[str, Any] | None:
    """The numeric fields of a float or int parameter, filled; None when any is wrong."""
    ok = True
    for key in ("low", "high"):
        if key not in parameter:
            check.problem(path, f"{key} is required for {article(kind)} {kind} parameter")
            ok = False
        elif kind == "int":
            if not is_int(parameter[key]):
                check.problem(f"{path}.{key}", f"must be an integer for an int parameter "
                                               f"(got {show(parameter[key])}){type_hint(parameter[key])}")
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


def _check_choices(check: Checker, parameter: Mapping[str, Any], path: str) -> dict[str, Any] | None:
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


def _check_parameter(check: Checker, raw: Any, path: str) -> dict[str, Any] | None:
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
    check.known_fields(parameter, path, allowed, context=f"for {article(kind)} {kind} parameter")
    name_ok = "name" in parameter
    if not name_ok:
        check.problem(path, "name is required")
    else:
        name_ok = check.name(parameter["name"], f"{path}.name", PARAMETER_NAME,
                             "must match [a-z][a-z0-9_]* (it becomes the suffix of KTUNE_PARAM_<NAME>)")
    body = _check_choices(check, parameter, path) if kind == "categorical" else _check_range(
        check, parameter, path, kind)
    if not name_ok or body is None or any(key not in allowed for key in parameter):
        return None
    return {"name": parameter["name"], "type": kind, **body}


def check_parameters(check: Checker, spec: Mapping[str, Any]) -> list[dict[str, Any]] | None:
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
    checked = [parameter for parameter in parameters if parameter is not None]
    return None if len(checked) < len(parameters) else checked


def parameters_from(filled: list[dict[str, Any]]) -> tuple[Parameter, ...]:
    return tuple(
        Parameter(name=p["name"], type=p["type"], choices=tuple(p["choices"]))
        if p["type"] == "categorical"
        else Parameter(name=p["name"], type=p["type"], low=p["low"], high=p["high"], log=p["log"],
                       step=p.get("step"))
        for p in filled
    )


def value_in_space(parameter: Parameter, value: Any) -> bool:
    """Whether `value` is one the parameter can take: a choice, or a number within bounds and on the step."""
    if parameter.type == "categorical":
        return any(value == choice and type(value) is type(choice) for choice in parameter.choices)
    if not is_number(value) or (parameter.type == "int" and not float(value).is_integer()):
        return False
    low, high = parameter.bounds()
    if not low <= value <= high:
        return False
    if parameter.step is None:
        return True
    steps: float = (value - low) / parameter.step
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))


def _check_enqueued(check: Checker, raw: Any, path: str, parameters: tuple[Parameter, ...]) -> bool:
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
                     else f"{article(parameter.type)} {parameter.type} in [{parameter.low}, {parameter.high}]"
                          + (f" on steps of {parameter.step}" if parameter.step is not None else ""))
            check.problem(f"{path}.{name}", f"must be {space} (got {show(value)})")
            ok = False
    return ok


def _check_job_ref(check: Checker, raw: Any, path: str) -> dict[str, Any] | None:
    ref = check.mapping(raw, path)
    if ref is None:
        return None
    check.known_fields(ref, path, _JOB_REF_FIELDS)
    if "name" not in ref:
        check.problem(path, "name is required (the earlier TuningJob's metadata.name)")
        return None
    ok = check.name(ref["name"], f"{path}.name", DNS_LABEL, "must be a TuningJob name (a DNS label)")
    if ref.get("namespace") is not None:
        ok &= check.name(ref["namespace"], f"{path}.namespace", DNS_LABEL, "must be a namespace (a DNS label)")
    if not ok or any(key not in _JOB_REF_FIELDS for key in ref):
        return None
    return {key: ref[key] for key in _JOB_REF_FIELDS if ref.get(key) is not None}


def check_warm_start(check: Checker, raw: Any, parameters: tuple[Parameter, ...] | None,
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
