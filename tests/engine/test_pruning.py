"""Every pruner path: a trial far behind the others is pruned, a good one is not; nothing prunes with none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ktune.engine import Engine, TrialState
from ktune.spec import JobSpec

PRUNERS = {
    "median": {"n_startup_trials": 3},
    "percentile": {"percentile": 25.0, "n_startup_trials": 3},
    "hyperband": {"min_resource": 1, "max_resource": 6, "reduction_factor": 2},
    "successive_halving": {"min_resource": 1, "reduction_factor": 2},
    "threshold": {"lower": 0.3},
}


def run_good_trials(engine: Engine, metric: str, count: int, steps: int = 6) -> None:
    """Finished trials whose curves climb to about 0.8 (latency falls towards 10 ms)."""
    for i in range(count):
        record = engine.ask(now=float(i))
        for step in range(steps):
            progress = (step + 1) / steps
            engine.report(record.number, step, {"ndcg_at_10": 0.8 * progress + 0.01 * i,
                                                "latency_ms": 10.0 / progress})
        engine.tell_succeeded(record.number, {"ndcg_at_10": 0.8 + 0.01 * i, "latency_ms": 10.0 + i})


def first_pruned_step(engine: Engine, values: dict[str, float], steps: int = 6) -> int | None:
    record = engine.ask(now=100.0)
    for step in range(steps):
        if engine.report(record.number, step, values):
            engine.tell_pruned(record.number, now=101.0)
            return step
    engine.tell_succeeded(record.number, values)
    return None


@pytest.mark.parametrize("name", PRUNERS)
def test_pruner_stops_a_trial_far_behind_the_others(make_spec: Callable[..., JobSpec], name: str) -> None:
    engine = Engine(make_spec(pruner={"name": name, "options": PRUNERS[name]},
                              sampler={"name": "random", "seed": 1}))
    run_good_trials(engine, "ndcg_at_10", 8)
    assert first_pruned_step(engine, {"ndcg_at_10": 0.01}) is not None
    pruned = engine.records[-1]
    assert pruned.state is TrialState.PRUNED and pruned.reason == "PrunedByPruner"
    assert pruned.values is None and pruned.message.startswith("ndcg_at_10=0.01 at step")


@pytest.mark.parametrize("name", ["median", "percentile", "threshold"])
def test_pruner_lets_a_leading_trial_run(make_spec: Callable[..., JobSpec], name: str) -> None:
    engine = Engine(make_spec(pruner={"name": name, "options": PRUNERS[name]}))
    run_good_trials(engine, "ndcg_at_10", 8)
    assert first_pruned_step(engine, {"ndcg_at_10": 0.95}) is None


def test_without_a_pruner_nothing_is_pruned_but_intermediate_values_are_kept(
        make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec())
    run_good_trials(engine, "ndcg_at_10", 6)
    assert first_pruned_step(engine, {"ndcg_at_10": 0.0}) is None
    assert engine.records[0].intermediate == pytest.approx({s: 0.8 * (s + 1) / 6 for s in range(6)})


def test_multi_objective_job_prunes_on_its_pruner_metric(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(multi=True, pruner={"name": "median", "metric": "latency_ms",
                                                  "options": {"n_startup_trials": 3}}))
    run_good_trials(engine, "latency_ms", 6)
    # latency is minimised: a slow trial is pruned, a fast one is not.
    assert first_pruned_step(engine, {"ndcg_at_10": 0.9, "latency_ms": 500.0}) is not None
    assert first_pruned_step(engine, {"ndcg_at_10": 0.1, "latency_ms": 1.0}) is None
    assert engine.records[0].intermediate[5] == pytest.approx(10.0)


def test_multi_objective_job_without_pruner_never_prunes(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(multi=True))
    run_good_trials(engine, "ndcg_at_10", 6)
    assert first_pruned_step(engine, {"ndcg_at_10": 0.0, "latency_ms": 900.0}) is None


def test_report_ignores_missing_metrics_repeated_steps_and_finished_trials(
        make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(pruner={"name": "threshold", "options": {"lower": 0.3}}))
    record = engine.ask(now=0.0)
    assert engine.report(record.number, 0, {"mrr_at_10": 0.1}) is False
    assert engine.report(record.number, 1, {"ndcg_at_10": 0.5}) is False
    # Step 1 keeps its first value 0.5; had 0.1 replaced it, the threshold (0.3) would prune.
    assert engine.report(record.number, 1, {"ndcg_at_10": 0.1}) is False
    assert engine.record(record.number).intermediate == {1: 0.5}
    assert engine.record(record.number).metrics == {"mrr_at_10": 0.1, "ndcg_at_10": 0.1}
    engine.tell_succeeded(record.number, {"ndcg_at_10": 0.6})
    assert engine.report(record.number, 2, {"ndcg_at_10": 0.0}) is False


def test_step_given_as_a_whole_float_counts_and_negative_steps_are_ignored(
        make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(pruner={"name": "threshold", "options": {"lower": 0.3}}))
    record = engine.ask(now=0.0)
    assert engine.report(record.number, -1, {"ndcg_at_10": 0.0}) is False
    step: Any = 2.0
    assert engine.report(record.number, step, {"ndcg_at_10": 0.0}) is True
    assert engine.record(record.number).intermediate == {2: 0.0}
