"""The problem collector shared by every TuningJob check, and how problems quote values.

A problem reads `spec.path[i].field: rule (got X)`; every check appends to one `Checker` so that all
problems of a file are reported at once.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from ktune.spec.model import MAX_NAME_LENGTH

PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]*")
METRIC_NAME = re.compile(r"[a-z_][a-z0-9_]*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SHOW_LIMIT = 60


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


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def type_hint(value: Any) -> str:
    """Why a value that looks like a number is not one: it was quoted (kubectl's YAML reads `1e-5` as a number)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return "; it is quoted, so YAML reads a string: write the number without quotes"
    return ""


class Checker:
    """Collects problems while it walks a TuningJob and fills in defaults."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, rule: str) -> None:
        self.problems.append(f"{path}: {rule}")

    def all(self, problems: Iterable[tuple[str, str]]) -> bool:
        """Record `(path, rule)` problems found elsewhere; True when there were none."""
        count = len(self.problems)
        for path, rule in problems:
            self.problem(path, rule)
        return len(self.problems) == count

    def mapping(self, value: Any, path: str) -> Mapping[Any, Any] | None:
        """The value if it is a mapping (its keys are whatever the YAML held: not only strings)."""
        if isinstance(value, Mapping):
            return value
        self.problem(path, f"must be a mapping (got {show(value)})")
        return None

    def known_fields(self, value: Mapping[Any, Any], path: str, allowed: Sequence[str],
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

    def enum(self, value: Any, path: str, allowed: Sequence[str]) -> TypeGuard[str]:
        if isinstance(value, str) and value in allowed:
            return True
        self.problem(path, f"must be one of {', '.join(allowed)} (got {show(value)}){did_you_mean(value, allowed)}")
        return False

    def integer(self, value: Any, path: str, low: int, high: int | None = None) -> bool:
        if not is_int(value):
            self.problem(path, f"must be an integer (got {show(value)}){type_hint(value)}")
            return False
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            self.problem(path, f"must be {bounds} (got {value})")
            return False
        return True

    def number(self, value: Any, path: str) -> bool:
        if is_number(value):
            return True
        self.problem(path, f"must be a finite number (got {show(value)}){type_hint(value)}")
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
