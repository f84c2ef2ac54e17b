"""Small builders of OpenAPI v3 schema nodes, each with the `description` that `kubectl explain` shows."""

from typing import Any

from ktune.spec.checker import METRIC_NAME
from ktune.spec.model import MAX_NAME_LENGTH

Schema = dict[str, Any]


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def integer(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "description": description, **extra}


def number(description: str, **extra: Any) -> Schema:
    return {"type": "number", "description": description, **extra}


def boolean(description: str, **extra: Any) -> Schema:
    return {"type": "boolean", "description": description, **extra}


def obj(description: str, properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "description": description, "properties": properties, **extra}


def array(description: str, items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "description": description, "items": items, **extra}


def free_form(description: str) -> Schema:
    """A map whose values may be any JSON (Optuna options, parameter values): kept as written."""
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


def any_scalar(description: str) -> Schema:
    """A string, number or boolean (a categorical choice): structural schemas have no union type."""
    return {"description": description, "x-kubernetes-preserve-unknown-fields": True}


def pattern(regex: str) -> str:
    return f"^{regex}$"


def metric_name(description: str) -> Schema:
    return string(description, pattern=pattern(METRIC_NAME.pattern), maxLength=MAX_NAME_LENGTH)
