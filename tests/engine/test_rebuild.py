"""A rebuilt engine suggests exactly what the original would have: the operator restarts this way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
import pytest

from ktune.engine import Engine, TrialRecord, TrialState
from ktune.spec import JobSpec

GRID_PARAMETERS = [
    {"name": "learning_rate", "type": "float", "low": 1.0e-4, "high": 1.0e-3, "step": 1.0e-4},
    {"name": "epochs", "type": "int", "low": 1, "high": 4},
    {"name": "warmup_ratio", "type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
    {"name": "batch_size", "type": "categorical", "choices": [16, 32, 64]},
]

# (sampler, options, trials before the rebuild, multi-objective)
SCENARIOS = [
    ("tpe", {"n_startup_trials": 4}, 12, False),
    ("tpe", {"n_startup_trials": 4, "multivariate": True}, 12, False),
    ("tpe", {"n_startup_trials": 4}, 12, True),
    ("random", {}, 8, False),
    ("grid", {}, 12, False),
    ("cmaes", {"popsize": 4, "n_startup_trials": 2}, 14, False),
    ("qmc", {"qmc_type": "halton", "scramble": True}, 10, False),
    ("qmc", {}, 10, True),
    ("gp", {"n_startup_trials": 2}, 4, False),
    ("nsga2", {"population_size": 4}, 14, False),
    ("nsga2", {"population_size": 4}, 14, True),
]


def scenario_spec(make_spec: Callable[..., JobSpec], sampler: str, options: dict[str, Any],
                  multi: bool) -> JobSpec:
    fields: dict[str, Any] = {"sampler": {"name": sampler, "seed": 11, "options": options}}
    if sampler == "grid":
        fields["parameters"] = GRID_PARAMETERS
    if multi:
        fields["pruner"] = {"name": "median", "metric": "ndcg_at_10", "options": {"n_startup_trials": 2}}
    else:
        fields["pruner"] = {"name": "median", "options": {"n_startup_trials": 2}}
    return make_spec(multi=multi, **fields)


def persisted(engine: Engine) -> list[TrialRecord]:
    """The records as a store would give them back: through JSON."""
    return [TrialRecord.from_dict(json.loads(json.dumps(r.to_dict(), allow_nan=False))) for r in engine.records]


@pytest.mark.parametrize(("sampler", "options", "trials", "multi"), SCENARIOS,
                         ids=[f"{s[0]}-{i}{'-multi' if s[3] else ''}" for i, s in enumerate(SCENARIOS)])
def test_rebuilt_engine_suggests_what_the_original_would_have(
        make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None],
        sampler: str, options: dict[str, Any], trials: int, multi: bool) -> None:
    spec = scenario_spec(make_spec, sampler, options, multi)
    original = Engine(spec)
    drive(original, trials)
    running = original.ask(now=100.0)
    original.report(running.number, 0, {"ndcg_at_10": 0.1, "latency_ms": 5.0})

    rebuilt = Engine(spec, persisted(original))

    assert [r.to_dict() for r in rebuilt.records] == [r.to_dict() for r in original.records]
    assert rebuilt.records[-1].state is TrialState.RUNNING
    states = {r.state for r in original.records}
    assert TrialState.SUCCEEDED in states and states & {TrialState.FAILED, TrialState.PRUNED}
    assert rebuilt.ask(now=101.0).params == original.ask(now=101.0).params
    # The running trial goes on in the rebuilt study as it would have in the original.
    answers = [engine.report(running.number, 1, {"ndcg_at_10": 0.2}) for engine in (original, rebuilt)]
    assert answers[0] == answers[1]
    for engine in (original, rebuilt):
        engine.tell_succeeded(running.number, {"ndcg_at_10": 0.5, "latency_ms": 9.0})
    assert rebuilt.ask(now=102.0).params == original.ask(now=102.0).params


def test_rebuilt_engine_gives_the_same_pruning_answer(make_spec: Callable[..., JobSpec],
                                                       drive: Callable[[Engine, int], None]) -> None:
    spec = make_spec(pruner={"name": "percentile", "options": {"percentile": 40.0, "n_startup_trials": 3}})
    original = Engine(spec)
    drive(original, 8)
    weak = original.ask(now=50.0)
    original.report(weak.number, 0, {"ndcg_at_10": -5.0})
    rebuilt = Engine(spec, persisted(original))
    answers = [engine.report(weak.number, 1, {"ndcg_at_10": -5.0}) for engine in (original, rebuilt)]
    assert answers == [True, True]


def test_engine_resumes_from_its_journal_without_records(make_spec: Callable[..., JobSpec],
                                                          drive: Callable[[Engine, int], None],
                                                          tmp_path: Any) -> None:
    spec = make_spec(sampler={"name": "tpe", "seed": 5, "options": {"n_startup_trials": 3}})
    path = str(tmp_path / "journal.log")

    def journal(file: str) -> optuna.storages.JournalStorage:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(file))

    original = Engine(spec, storage=journal(path), study_name="job")
    drive(original, 9)
    original.ask(now=20.0)
    # Resume from a copy, so that the two engines do not share one study.
    copy = tmp_path / "copy.log"
    copy.write_bytes((tmp_path / "journal.log").read_bytes())

    resumed = Engine(spec, storage=journal(str(copy)), study_name="job")

    assert [r.to_dict() for r in resumed.records] == [r.to_dict() for r in original.records]
    assert resumed.records[3].metrics["mrr_at_10"] == original.records[3].metrics["mrr_at_10"]
    assert resumed.ask(now=21.0).params == original.ask(now=21.0).params


def test_records_with_a_gap_are_refused(make_spec: Callable[..., JobSpec]) -> None:
    record = TrialRecord(number=1, params={"learning_rate": 1e-3, "epochs": 1, "warmup_ratio": 0.0,
                                           "batch_size": 16}, state=TrialState.RUNNING)
    with pytest.raises(ValueError, match="trial 0 is missing"):
        Engine(make_spec(), [record])


def test_records_that_do_not_fit_the_spec_are_refused_with_the_trial_number(
        make_spec: Callable[..., JobSpec]) -> None:
    record = TrialRecord(number=0, params={"learning_rate": 5.0, "epochs": 1, "warmup_ratio": 0.0,
                                           "batch_size": 16}, state=TrialState.RUNNING)
    with pytest.raises(ValueError, match="trial 0 does not fit the job's spec"):
        Engine(make_spec(), [record])
