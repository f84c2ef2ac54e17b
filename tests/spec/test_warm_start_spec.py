"""spec.warmStart: sources by name, enqueued configurations checked against the search space."""

import copy

import pytest

from ktune.algorithms import load_tuningjob
from ktune.spec import JobRef, SpecError, WarmStart

JOB = {
    "apiVersion": "ktune.dev/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "warm"},
    "spec": {
        "objective": {"metric": "score"},
        "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0},
                       {"name": "n", "type": "int", "low": 1, "high": 9, "step": 2},
                       {"name": "c", "type": "categorical", "choices": ["a", "b"]}],
        "budget": {"maxTrials": 2},
        "trial": {"template": {"spec": {"containers": [{"name": "t", "command": ["python"]}]}}},
    },
}


def with_warm_start(warm_start: object) -> dict:
    job = copy.deepcopy(JOB)
    job["spec"]["warmStart"] = warm_start
    return job


def test_warm_start_sources_and_partial_enqueued_configurations_load() -> None:
    job = load_tuningjob(with_warm_start({"from": [{"name": "earlier"}, {"name": "other", "namespace": "team-b"}],
                                          "enqueue": [{"x": 0.25, "n": 3, "c": "b"}, {"x": 0}]}))
    assert job.spec.warm_start == WarmStart((JobRef("earlier"), JobRef("other", "team-b")),
                                            ({"x": 0.25, "n": 3, "c": "b"}, {"x": 0}))
    assert job.manifest["spec"]["warmStart"]["from"] == [{"name": "earlier"}, {"name": "other",
                                                                                "namespace": "team-b"}]
    assert load_tuningjob(JOB).spec.warm_start == WarmStart()
    assert "warmStart" not in load_tuningjob(JOB).manifest["spec"]


def test_every_warm_start_problem_is_named_with_its_field() -> None:
    with pytest.raises(SpecError) as error:
        load_tuningjob(with_warm_start({"from": [{"name": "Bad_Name"}, {"nam": "x"}],
                                        "enqueue": [{"x": 2.0, "n": 4, "c": "z", "y": 1}, {}, {"x": 0.5}],
                                        "seed": 1}))
    assert error.value.problems == [
        "spec.warmStart.seed: unknown field (allowed: from, enqueue)",
        "spec.warmStart.from[0].name: must be a TuningJob name (a DNS label) (got 'Bad_Name')",
        "spec.warmStart.from[1].nam: unknown field; did you mean 'name'? (allowed: name, namespace)",
        "spec.warmStart.from[1]: name is required (the earlier TuningJob's metadata.name)",
        "spec.warmStart.enqueue[0].x: must be a float in [0.0, 1.0] (got 2.0)",
        "spec.warmStart.enqueue[0].n: must be an int in [1, 9] on steps of 2 (got 4)",
        "spec.warmStart.enqueue[0].c: must be one of 'a', 'b' (got 'z')",
        "spec.warmStart.enqueue[0].y: not a parameter of this job (parameters: x, n, c)",
        "spec.warmStart.enqueue[1]: must set at least one parameter",
        "spec.warmStart.enqueue: at most maxTrials entries (got 3 > 2)",
    ]
    with pytest.raises(SpecError, match=r"spec.warmStart.from: must be a list \(got 'earlier'\)"):
        load_tuningjob(with_warm_start({"from": "earlier"}))
