"""Which keyword arguments of an Optuna sampler or pruner a TuningJob may set in `options`.

The allowed options are read from the constructor's signature, so they follow the installed Optuna.
Arguments that take Python objects (callables, other samplers, trials) cannot be written in YAML and
arguments ktune sets itself (`seed`, the grid's `search_space`) are left out.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

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


def settable_options(cls: type, reserved: frozenset[str]) -> dict[str, str]:
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


def required_options(cls: type, reserved: frozenset[str]) -> tuple[str, ...]:
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
