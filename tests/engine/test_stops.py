"""When a job is finished and why: goal, deadline, failures, maxTrials; how many trials may start."""

from __future__ import annotations

from collections.abc import Callable

from ktune.engine import JOB_STOPPED, Engine
from ktune.spec import JobSpec


def test_goal_reached_when_a_trial_meets_a_maximised_goal(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(objective={"metric": "ndcg_at_10", "goal": 0.9}))
    first = engine.ask(now=0.0)
    engine.tell_succeeded(first.number, {"ndcg_at_10": 0.89})
    assert engine.stop_decision(now=1.0) is None
    second = engine.ask(now=1.0)
    engine.tell_succeeded(second.number, {"ndcg_at_10": 0.9})
    decision = engine.stop_decision(now=2.0)
    assert decision is not None and decision.reason == "GoalReached" and decision.succeeded
    assert decision.message == "trial 1 reached ndcg_at_10=0.9 (goal >= 0.9)"
    assert engine.launchable(running=0, now=2.0) == 0


def test_goal_reached_when_a_trial_gets_below_a_minimised_goal(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(objective={"metric": "eval_loss", "direction": "minimize", "goal": 0.2}))
    record = engine.ask(now=0.0)
    engine.tell_succeeded(record.number, {"eval_loss": 0.25})
    assert engine.stop_decision(now=0.0) is None
    record = engine.ask(now=0.0)
    engine.tell_succeeded(record.number, {"eval_loss": 0.15})
    decision = engine.stop_decision(now=0.0)
    assert decision is not None and decision.reason == "GoalReached"
    assert "(goal <= 0.2)" in decision.message


def test_deadline_counts_from_the_first_trial_and_survives_a_rebuild(make_spec: Callable[..., JobSpec]) -> None:
    spec = make_spec(budget={"maxTrials": 10, "activeDeadlineSeconds": 60})
    engine = Engine(spec)
    assert engine.stop_decision(now=1000.0) is None  # not started yet
    engine.ask(now=100.0)
    assert engine.stop_decision(now=159.0) is None
    decision = engine.stop_decision(now=160.0)
    assert decision is not None and decision.reason == "DeadlineExceeded" and not decision.succeeded
    assert engine.launchable(running=1, now=160.0) == 0
    rebuilt = Engine(spec, engine.records)
    assert rebuilt.stop_decision(now=160.0) == decision


def test_deadline_counts_from_an_explicit_start(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(budget={"maxTrials": 10, "activeDeadlineSeconds": 60}), started_at=0.0)
    decision = engine.stop_decision(now=61.0)
    assert decision is not None and decision.reason == "DeadlineExceeded"


def test_job_fails_once_max_failed_trials_have_failed_not_counting_stopped_ones(
        make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(budget={"maxTrials": 10, "parallelism": 4, "maxFailedTrials": 2}))
    records = [engine.ask(now=0.0) for _ in range(4)]
    engine.tell_failed(records[0].number, "OOMKilled", "container ran out of memory")
    engine.tell_failed(records[1].number, JOB_STOPPED)
    assert engine.stop_decision(now=0.0) is None
    engine.tell_failed(records[2].number, "Error")
    decision = engine.stop_decision(now=0.0)
    assert decision is not None and decision.reason == "TooManyFailedTrials" and not decision.succeeded
    assert decision.message == "2 trials failed (maxFailedTrials 2)"


def test_missing_objective_counts_as_a_failure(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(budget={"maxTrials": 10, "maxFailedTrials": 1}))
    record = engine.ask(now=0.0)
    engine.tell_succeeded(record.number, {"mrr_at_10": 0.5})
    decision = engine.stop_decision(now=0.0)
    assert decision is not None and decision.reason == "TooManyFailedTrials"


def test_launchable_keeps_to_parallelism_and_max_trials_and_max_trials_waits_for_running(
        make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(budget={"maxTrials": 3, "parallelism": 2}))
    assert engine.launchable(running=0, now=0.0) == 2
    first, second = engine.ask(now=0.0), engine.ask(now=0.0)
    assert engine.launchable(running=2, now=0.0) == 0
    engine.tell_succeeded(first.number, {"ndcg_at_10": 0.5})
    assert engine.launchable(running=1, now=0.0) == 1
    third = engine.ask(now=0.0)
    assert engine.launchable(running=1, now=0.0) == 0
    engine.tell_pruned(second.number)
    assert engine.stop_decision(now=0.0) is None  # trial 2 still runs
    engine.tell_failed(third.number, "Error")
    decision = engine.stop_decision(now=0.0)
    assert decision is not None and decision.reason == "MaxTrialsReached" and decision.succeeded
    assert decision.message == "3 trials: 1 succeeded, 1 pruned, 1 failed"


def test_max_trials_reached_without_any_success_is_a_failed_job(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(budget={"maxTrials": 2, "parallelism": 2}))
    for _ in range(2):
        engine.tell_failed(engine.ask(now=0.0).number, "Error")
    decision = engine.stop_decision(now=0.0)
    assert decision is not None and decision.reason == "MaxTrialsReached" and not decision.succeeded


def test_goal_takes_precedence_over_the_deadline(make_spec: Callable[..., JobSpec]) -> None:
    engine = Engine(make_spec(objective={"metric": "ndcg_at_10", "goal": 0.5},
                              budget={"maxTrials": 5, "activeDeadlineSeconds": 10}))
    engine.tell_succeeded(engine.ask(now=0.0).number, {"ndcg_at_10": 0.7})
    decision = engine.stop_decision(now=100.0)
    assert decision is not None and decision.reason == "GoalReached"
