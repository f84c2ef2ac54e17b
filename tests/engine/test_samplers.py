"""Every sampler suggests valid parameters; seeds reproduce; grid and QMC never repeat a point."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from ktune.engine import Engine
from ktune.spec import JobSpec

GRID_PARAMETERS = [
    {"name": "learning_rate", "type": "float", "low": 1.0e-4, "high": 5.0e-4, "step": 1.0e-4},
    {"name": "epochs", "type": "int", "low": 1, "high": 4},
    {"name": "warmup_ratio", "type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
    {"name": "batch_size", "type": "categorical", "choices": [16, 64]},
]

SAMPLERS = {
    "tpe": {"n_startup_trials": 3},
    "random": {},
    "grid": {},
    "cmaes": {"popsize": 4},
    "qmc": {},
    "gp": {"n_startup_trials": 2},
    "nsga2": {"population_size": 4},
}


def assert_fits(params: dict[str, Any], spec: JobSpec) -> None:
    assert set(params) == {p.name for p in spec.parameters}
    for parameter in spec.parameters:
        value = params[parameter.name]
        if parameter.type == "categorical":
            assert value in parameter.choices
            continue
        assert parameter.low <= value <= parameter.high
        if parameter.type == "int":
            assert isinstance(value, int)
        else:
            assert isinstance(value, float)
        if parameter.step is not None:
            steps = (value - parameter.low) / parameter.step
            assert abs(steps - round(steps)) < 1e-6, (parameter.name, value)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_suggests_parameters_inside_the_search_space(
        make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None], name: str) -> None:
    fields: dict[str, Any] = {"sampler": {"name": name, "seed": 1, "options": SAMPLERS[name]}}
    if name == "grid":
        fields["parameters"] = GRID_PARAMETERS
    spec = make_spec(**fields)
    engine = Engine(spec)
    drive(engine, 4 if name == "gp" else 9)
    for record in engine.records:
        assert_fits(record.params, spec)
    assert engine.best_trial is not None


def test_the_same_seed_gives_the_same_trials_and_another_seed_other_trials(
        make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None]) -> None:
    def suggestions(seed: int) -> list[dict[str, Any]]:
        engine = Engine(make_spec(sampler={"name": "tpe", "seed": seed, "options": {"n_startup_trials": 3}}))
        drive(engine, 8)
        return [r.params for r in engine.records]

    assert suggestions(4) == suggestions(4)
    assert suggestions(4) != suggestions(5)


def test_a_job_without_seed_still_suggests_valid_parameters(make_spec: Callable[..., JobSpec],
                                                            drive: Callable[[Engine, int], None]) -> None:
    for name in ("tpe", "grid", "qmc"):
        fields: dict[str, Any] = {"sampler": {"name": name}}
        if name == "grid":
            fields["parameters"] = GRID_PARAMETERS
        spec = make_spec(**fields)
        engine = Engine(spec)
        drive(engine, 5)
        for record in engine.records:
            assert_fits(record.params, spec)


def test_grid_visits_every_point_once_and_the_job_ends_with_the_grid(make_spec: Callable[..., JobSpec]) -> None:
    parameters = [
        {"name": "learning_rate", "type": "float", "low": 1.0e-4, "high": 3.0e-4, "step": 1.0e-4},
        {"name": "epochs", "type": "int", "low": 1, "high": 3, "step": 2},
        {"name": "batch_size", "type": "categorical", "choices": [16, 32]},
    ]
    spec = make_spec(parameters=parameters, sampler={"name": "grid", "seed": 3},
                     budget={"maxTrials": 50, "parallelism": 4})
    engine = Engine(spec)
    seen = []
    while engine.launchable(running=0, now=0.0):
        record = engine.ask(now=0.0)
        seen.append((round(record.params["learning_rate"], 8), record.params["epochs"], record.params["batch_size"]))
        engine.tell_succeeded(record.number, {"ndcg_at_10": 0.5})
    expected = set(itertools.product([1e-4, 2e-4, 3e-4], [1, 3], [16, 32]))
    assert len(seen) == 12 and set(seen) == expected
    decision = engine.stop_decision(now=0.0)
    assert decision is not None and decision.reason == "MaxTrialsReached"


def test_running_grid_points_are_not_handed_out_twice(make_spec: Callable[..., JobSpec]) -> None:
    parameters = [{"name": "epochs", "type": "int", "low": 1, "high": 4}]
    engine = Engine(make_spec(parameters=parameters, sampler={"name": "grid"}, budget={"maxTrials": 4,
                                                                                         "parallelism": 4}))
    running = [engine.ask(now=0.0).params["epochs"] for _ in range(4)]
    assert sorted(running) == [1, 2, 3, 4]


def test_qmc_never_repeats_a_point(make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None]) -> None:
    engine = Engine(make_spec(sampler={"name": "qmc", "seed": 2}))
    drive(engine, 16)
    points = [tuple(sorted(r.params.items())) for r in engine.records]
    assert len(set(points)) == len(points)
