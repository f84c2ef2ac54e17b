"""Whatever object arrives, ktune.spec answers with SpecError or a TuningJob, never another exception."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ktune.algorithms import load_tuningjob
from ktune.spec import SpecError, TuningJob, kube_yaml

CORPUS = Path(__file__).parents[1] / "fixtures" / "tuningjobs"
VALID_OBJECTS = [kube_yaml.load(path.read_text()) for path in sorted((CORPUS / "valid").glob("*.yaml"))]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a subtree of a JSON-like value."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    result = copy.deepcopy(value)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return result


def load_or_spec_error(obj: Any) -> None:
    try:
        assert isinstance(load_tuningjob(obj), TuningJob)
    except SpecError as error:
        assert error.problems and all(isinstance(problem, str) and problem for problem in error.problems)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_value_gives_a_job_or_spec_error(obj: Any) -> None:
    load_or_spec_error(obj if isinstance(obj, dict) else {"apiVersion": "ktune.dev/v1alpha1", "spec": obj})


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_valid_job_with_any_subtree_replaced_gives_a_job_or_spec_error(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(VALID_OBJECTS))
    path = data.draw(st.sampled_from(paths_of(base)))
    load_or_spec_error(replaced(base, path, data.draw(json_values)))
