"""Warm start: earlier jobs' finished trials seed the study; enqueued configurations run first."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from ktune.engine import Engine, TrialRecord, TrialState
from ktune.engine.warm_start import WarmStartSource, import_trials
from ktune.spec import JobSpec, Parameter


def finished_source(spec: JobSpec, drive: Callable[[Engine, int], None], trials: int = 12) -> list[TrialRecord]:
    engine = Engine(spec)
    drive(engine, trials)
    return engine.records


def test_imported_trials_change_the_first_suggestion_of_a_seeded_tpe_job(
    make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None]
) -> None:
    spec = make_spec(sampler={"name": "tpe", "seed": 3, "options": {"n_startup_trials": 5}})
    imported = import_trials(spec, [WarmStartSource("earlier", spec.parameters, finished_source(spec, drive))])
    assert len(imported.records) >= 5 and imported.dropped == 0
    cold = Engine(spec).ask(now=0.0)
    warm_engine = Engine(spec, imported=imported.records)
    warm = warm_engine.ask(now=0.0)
    assert warm.params != cold.params
    assert warm.number == 0 and warm_engine.records == [warm]
    assert warm_engine.imported_count == len(imported.records)
    assert warm_engine.counts() == {"running": 1, "succeeded": 0, "pruned": 0, "failed": 0}
    assert len(warm_engine.study.trials) == len(imported.records) + 1


def test_a_rebuild_with_the_same_imports_and_records_suggests_the_same_next_trial(
    make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None]
) -> None:
    spec = make_spec(sampler={"name": "tpe", "seed": 3, "options": {"n_startup_trials": 5}})
    imported = import_trials(spec, [WarmStartSource("earlier", spec.parameters, finished_source(spec, drive))])
    original = Engine(spec, imported=imported.records)
    drive(original, 4)
    rebuilt = Engine(spec, original.records, imported=imported.records)
    assert [r.number for r in rebuilt.records] == [0, 1, 2, 3]
    assert rebuilt.ask(now=9.0).params == original.ask(now=9.0).params


def test_a_journal_keeps_imported_trials_apart_from_the_jobs_own(
    make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None], tmp_path
) -> None:
    spec = make_spec(sampler={"name": "tpe", "seed": 3, "options": {"n_startup_trials": 5}})
    imported = import_trials(spec, [WarmStartSource("earlier", spec.parameters, finished_source(spec, drive))])
    journal = str(tmp_path / "journal.log")
    original = Engine(spec, storage=JournalStorage(JournalFileBackend(journal)), imported=imported.records)
    drive(original, 3)
    resumed = Engine(spec, storage=JournalStorage(JournalFileBackend(journal)), imported=imported.records)
    assert resumed.imported_count == len(imported.records)
    assert [r.to_dict() for r in resumed.records] == [r.to_dict() for r in original.records]
    in_memory = Engine(spec, original.records, imported=imported.records)
    assert resumed.ask(now=9.0).params == in_memory.ask(now=9.0).params


def test_trials_outside_the_new_space_or_without_the_objective_are_dropped_and_counted(
    make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec()
    base = {"learning_rate": 1e-3, "epochs": 2, "warmup_ratio": 0.1, "batch_size": 32}
    records = [
        TrialRecord(0, dict(base), TrialState.SUCCEEDED, [0.8], metrics={"ndcg_at_10": 0.8}),
        TrialRecord(1, {**base, "epochs": 9}, TrialState.SUCCEEDED, [0.7], metrics={"ndcg_at_10": 0.7}),
        TrialRecord(2, {**base, "batch_size": 128}, TrialState.SUCCEEDED, [0.6], metrics={"ndcg_at_10": 0.6}),
        TrialRecord(3, dict(base), TrialState.SUCCEEDED, [0.5], metrics={"eval_loss": 0.5}),
        TrialRecord(4, {**base, "epochs": 3.0}, TrialState.SUCCEEDED, [0.9], metrics={"ndcg_at_10": 0.9}),
        TrialRecord(5, dict(base), TrialState.PRUNED, None),
        TrialRecord(6, dict(base), TrialState.FAILED, None, reason="Error"),
    ]
    result = import_trials(spec, [WarmStartSource("earlier", None, records)])
    assert [r.params["epochs"] for r in result.records] == [2, 3]
    assert isinstance(result.records[1].params["epochs"], int)
    assert [r.number for r in result.records] == [0, 1]
    assert [r.values for r in result.records] == [[0.8], [0.9]]
    assert result.dropped == 3 and result.incompatible == []


def test_a_source_with_other_parameter_names_or_types_is_skipped_as_a_whole(make_spec: Callable[..., JobSpec]):
    spec = make_spec()
    renamed = tuple(Parameter("lr", p.type, p.low, p.high, p.log, p.step, p.choices) if p.name == "learning_rate"
                    else p for p in spec.parameters)
    retyped = tuple(Parameter(p.name, "float", 1, 4) if p.name == "epochs" else p for p in spec.parameters)
    record = TrialRecord(0, {"learning_rate": 1e-3, "epochs": 2, "warmup_ratio": 0.1, "batch_size": 32},
                         TrialState.SUCCEEDED, [0.8], metrics={"ndcg_at_10": 0.8})
    result = import_trials(spec, [WarmStartSource("a", renamed, [record]), WarmStartSource("b", retyped, [record]),
                                  WarmStartSource("c", spec.parameters, [record])])
    assert len(result.records) == 1 and result.dropped == 0
    assert result.incompatible[0].startswith("a: search space not compatible (parameters")
    assert result.incompatible[1] == "b: search space not compatible (epochs is float, not int)"


def test_enqueued_configurations_run_first_and_fill_the_missing_parameters(
    make_spec: Callable[..., JobSpec]
) -> None:
    first = {"learning_rate": 1e-3, "epochs": 2, "warmup_ratio": 0.1, "batch_size": 32}
    spec = make_spec(sampler={"name": "tpe", "seed": 3},
                     warmStart={"enqueue": [first, {"batch_size": 64}]})
    engine = Engine(spec)
    one, two, three = (engine.ask(now=float(n)) for n in range(3))
    assert one.params == first
    assert two.params["batch_size"] == 64 and set(two.params) == set(first)
    assert three.number == 2
    rebuilt = Engine(spec, engine.records)
    assert [r.params for r in rebuilt.records] == [one.params, two.params, three.params]


@pytest.mark.parametrize("sampler", ["random", "grid", "cmaes", "nsga2", "qmc"])
def test_every_sampler_accepts_imported_trials(
    make_spec: Callable[..., JobSpec], drive: Callable[[Engine, int], None], sampler: str
) -> None:
    fields = {"sampler": {"name": sampler, "seed": 1}}
    if sampler == "grid":
        fields["parameters"] = [{"name": "learning_rate", "type": "float", "low": 1.0e-3, "high": 5.0e-3,
                                 "step": 1.0e-3},
                                {"name": "epochs", "type": "int", "low": 1, "high": 4},
                                {"name": "warmup_ratio", "type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
                                {"name": "batch_size", "type": "categorical", "choices": [16, 32, 64]}]
    spec = make_spec(**fields)
    imported = import_trials(spec, [WarmStartSource("earlier", spec.parameters, finished_source(spec, drive, 6))])
    engine = Engine(spec, imported=imported.records)
    drive(engine, 3)
    assert [r.number for r in engine.records] == [0, 1, 2]
    assert engine.imported_count == len(imported.records) > 0
