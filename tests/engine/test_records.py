"""Trial records: outcomes, JSON round trip, counts, best trial and Pareto front."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from ktune.engine import Engine, TrialRecord, TrialState
from ktune.spec import JobSpec


def test_record_round_trips_through_strict_json(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(sampler={"name": "grid"}, parameters=[
        {"name": "epochs", "type": "int", "low": 1, "high": 3},
        {"name": "pooling", "type": "categorical", "choices": ["cls", "mean", True, 0.5]}]))
    record = engine.ask(now=12.5)
    engine.report(record.number, 0, {"ndcg_at_10": 0.3, "eval_loss": math.nan})
    engine.tell_succeeded(record.number, {"ndcg_at_10": 0.4, "test_ndcg_at_10": 0.41}, now=13.0)
    text = json.dumps(engine.record(0).to_dict(), allow_nan=False)
    again = TrialRecord.from_dict(json.loads(text))
    assert again == engine.record(0)
    assert again.intermediate == {0: 0.3} and again.state is TrialState.SUCCEEDED
    assert again.metrics == {"ndcg_at_10": 0.4, "test_ndcg_at_10": 0.41}
    assert (again.started_at, again.finished_at) == (12.5, 13.0)
    assert again.system_attrs["grid_id"] >= 0
    assert isinstance(again.params["epochs"], int)


def test_missing_objective_fails_the_trial_with_a_reason(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(multi=True))
    record = engine.tell_succeeded(engine.ask().number, {"ndcg_at_10": 0.5})
    assert record.state is TrialState.FAILED and record.reason == "MissingObjective"
    assert record.message == "final metrics lack the objective metric latency_ms"
    assert record.values is None


def test_non_finite_objective_fails_the_trial_with_a_reason(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec())
    number = engine.ask().number
    engine.report(number, 0, {"ndcg_at_10": 0.3})
    record = engine.tell_succeeded(number, {"ndcg_at_10": math.nan})
    assert record.state is TrialState.FAILED and record.reason == "InvalidObjective"
    assert "ndcg_at_10=nan" in record.message


def test_a_trial_is_told_once_and_unknown_numbers_are_named(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec())
    number = engine.ask().number
    engine.tell_pruned(number)
    with pytest.raises(ValueError, match="trial 0 is already Pruned"):
        engine.tell_succeeded(number, {"ndcg_at_10": 1.0})
    with pytest.raises(KeyError, match="no trial 7"):
        engine.tell_failed(7, "Error")


def test_counts_follow_the_outcomes(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(budget={"maxTrials": 10, "parallelism": 4}))
    numbers = [engine.ask().number for _ in range(4)]
    engine.tell_succeeded(numbers[0], {"ndcg_at_10": 0.5})
    engine.tell_pruned(numbers[1])
    engine.tell_failed(numbers[2], "OOMKilled")
    assert engine.counts() == {"running": 1, "succeeded": 1, "pruned": 1, "failed": 1}


@pytest.mark.parametrize(("direction", "best"), [("maximize", 1), ("minimize", 0)])
def test_best_trial_follows_the_direction_and_ties_go_to_the_earlier_trial(
        make_spec: Callable[..., JobSpec], direction: str, best: int) -> None:
    engine = Engine(make_spec(objective={"metric": "ndcg_at_10", "direction": direction},
                              budget={"maxTrials": 10, "parallelism": 4}))
    assert engine.best_trial is None and engine.pareto_front == []
    for value in (0.2, 0.7, 0.7, 0.2):
        engine.tell_succeeded(engine.ask().number, {"ndcg_at_10": value})
    assert engine.best_trial.number == best
    assert engine.pareto_front == [engine.best_trial]


def test_pareto_front_holds_the_undominated_trials(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(multi=True, budget={"maxTrials": 10, "parallelism": 5}))
    points = [(0.9, 50.0), (0.8, 20.0), (0.7, 30.0), (0.95, 80.0), (0.8, 20.0)]
    for ndcg, latency in points:
        engine.tell_succeeded(engine.ask().number, {"ndcg_at_10": ndcg, "latency_ms": latency})
    engine.tell_failed(engine.ask().number, "Error")
    assert [r.number for r in engine.pareto_front] == [0, 1, 3, 4]
    assert engine.best_trial is None
    assert engine.pareto_front[0].values == [0.9, 50.0]
