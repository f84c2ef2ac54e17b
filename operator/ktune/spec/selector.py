"""Checks of `spec.trial.primaryPod`, a Kubernetes LabelSelector: which pod of a trial resource is the metrics
source and writes the result.

The rules are the API server's for a LabelSelector (label keys and values, the four operators and their
values), so a selector `ktune validate` accepts is one the API server takes too; one that selects every pod
(empty) is refused, since it would not say which pod.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from ktune.spec.checker import Checker, show

PATH = "spec.trial.primaryPod"
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_FIELDS = ("matchLabels", "matchExpressions")
_EXPRESSION_FIELDS = ("key", "operator", "values")
_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_EXAMPLE = "e.g. {matchLabels: {training.kubeflow.org/replica-type: master}}"


def label_key_problem(key: Any) -> str | None:
    """Why `key` is not a label key ([prefix/]name: a DNS subdomain prefix, a name of at most 63 characters)."""
    if not isinstance(key, str):
        return f"label keys must be strings (got {show(key)})"
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _PREFIX.fullmatch(prefix)):
        return f"the prefix of label key {show(key)} must be a DNS subdomain (e.g. training.kubeflow.org)"
    if len(name) > 63 or not _NAME.fullmatch(name):
        return (f"label key {show(key)} must be [prefix/]name, the name at most 63 characters of [A-Za-z0-9-_.], "
                "starting and ending with a letter or digit")
    return None


def label_value_problem(value: Any) -> str | None:
    """Why `value` is not a label value (a string of at most 63 characters of [A-Za-z0-9-_.], maybe empty)."""
    if not isinstance(value, str):
        return f"label values must be strings (got {show(value)}); quote numbers in YAML, e.g. \"0\""
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return (f"label value {show(value)} must be at most 63 characters of [A-Za-z0-9-_.], starting and ending "
                "with a letter or digit")
    return None


def check_selector(check: Checker, raw: Any, path: str = PATH) -> dict[str, Any] | None:
    """A LabelSelector as the API server accepts it, with at least one term."""
    selector = check.mapping(raw, path)
    if selector is None:
        return None
    count = len(check.problems)
    check.known_fields(selector, path, _FIELDS)
    labels = selector.get("matchLabels")
    if labels is not None and check.mapping(labels, f"{path}.matchLabels") is not None:
        for key, value in labels.items():
            problem = label_key_problem(key) or label_value_problem(value)
            if problem is not None:
                check.problem(f"{path}.matchLabels", problem)
    expressions = selector.get("matchExpressions")
    if expressions is not None:
        if not isinstance(expressions, list):
            check.problem(f"{path}.matchExpressions", f"must be a list of {{key, operator, values}} "
                                                      f"(got {show(expressions)})")
        else:
            for i, expression in enumerate(expressions):
                _check_expression(check, expression, f"{path}.matchExpressions[{i}]")
    if len(check.problems) == count and not labels and not expressions:
        check.problem(path, f"must have matchLabels or matchExpressions: an empty selector selects every pod, not "
                            f"the one that writes the result ({_EXAMPLE})")
    return copy.deepcopy(dict(selector)) if len(check.problems) == count else None


def _check_expression(check: Checker, raw: Any, path: str) -> None:
    expression = check.mapping(raw, path)
    if expression is None:
        return
    check.known_fields(expression, path, _EXPRESSION_FIELDS)
    if "key" not in expression:
        check.problem(f"{path}.key", "is required: the label key the expression tests")
    else:
        problem = label_key_problem(expression["key"])
        if problem is not None:
            check.problem(f"{path}.key", problem)
    operator = expression.get("operator")
    if not check.enum(operator, f"{path}.operator", OPERATORS):
        return
    values = expression.get("values")
    if operator in ("In", "NotIn"):
        if not isinstance(values, list) or not values:
            check.problem(f"{path}.values", f"must be a non-empty list of label values with operator {operator} "
                                            f"(got {show(values)})")
            return
        for value in values:
            problem = label_value_problem(value)
            if problem is not None:
                check.problem(f"{path}.values", problem)
    elif values:
        check.problem(f"{path}.values", f"must be empty with operator {operator} (got {show(values)}): it tests "
                                        "only whether the label is there")


def selector_text(selector: Mapping[str, Any]) -> str:
    """A selector as `kubectl get -l` writes it (`a=b,c in (d,e)`), for messages."""
    terms = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        terms.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                      "DoesNotExist": f"!{key}"}[operator])
    return ",".join(terms)
