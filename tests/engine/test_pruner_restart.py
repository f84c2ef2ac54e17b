"""A restarted operator gives every trial the verdict the never-restarted one would have (#13 item 6).

Each scenario runs a job with a pruner: trials of 150 to 261 steps, three at a time, a curve that peaks
early (so a trial's best value lies in its first steps). At the restart point the running trials have
reported more than 100 steps (a Trial's readable `status.intermediate` keeps the latest 100). The engine
is rebuilt from Trial objects exactly as the operator keeps them (`trial_manifest` at creation, then
`trial_status` after each report, through JSON) and both engines finish the job on the same inputs: every
report's verdict must be the same. What a rebuild needs: all intermediate values, the successive halving
and hyperband rungs (`completed_rung_*`, on own trials and on the multi-objective shadow study's), and
the steps their "auto" resources were estimated to.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from ktune.engine import Engine, TrialRecord, TrialState
from ktune.operator.trials import record_from_trial, trial_manifest, trial_status
from ktune.spec import JobSpec

TUNINGJOB = {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob",
             "metadata": {"name": "job", "namespace": "ns", "uid": "job-uid"}}
PARALLELISM = 3
TRIALS = 16
RESTART_ROUND = 320  # by then some trials finished and the running ones reported more than 100 steps

PRUNERS: dict[str, tuple[dict[str, Any], bool]] = {
    "median": ({"name": "median", "options": {"n_startup_trials": 2}}, False),
    "percentile": ({"name": "percentile", "options": {"percentile": 40.0, "n_startup_trials": 2}}, False),
    "successive_halving": ({"name": "successive_halving", "options": {"reduction_factor": 3}}, False),
    "hyperband": ({"name": "hyperband", "options": {"reduction_factor": 3}}, False),
    "multi-objective successive_halving": (
        {"name": "successive_halving", "metric": "ndcg_at_10", "options": {"reduction_factor": 3}}, True),
    "multi-objective median": ({"name": "median", "metric": "ndcg_at_10", "options": {"n_startup_trials": 2}},
                               True),
}


def steps_of(number: int) -> int:
    """How many steps trial `number` runs when nothing prunes it (150, 187, 224, 261)."""
    return 150 + 37 * (number % 4)


def value_at(record: TrialRecord, step: int) -> float:
    """A noisy curve that peaks in the first 20 steps, then settles at the trial's quality."""
    quality = 0.3 + 0.6 * record.params["warmup_ratio"] / 0.2
    return quality + 0.25 * math.exp(-step / 20.0) + 0.05 * math.sin(1.7 * step + record.number)


class Simulation:
    """Drives a job round by round: each running trial reports its next step, finished ones make room."""

    def __init__(self, engine: Engine, live: dict[int, int] | None = None) -> None:
        self.engine = engine
        self.live = dict(live or {})  # trial number -> the next step it reports
        self.trace: list[tuple[int, int, bool]] = []  # (trial, step, pruned) of every report
        self.round = 0

    def run(self, until_round: int | None = None) -> None:
        while self.live or len(self.engine.records) < TRIALS:
            if until_round is not None and self.round >= until_round:
                return
            self.round += 1
            now = float(self.round)
            for number in sorted(self.live):
                record = self.engine.record(number)
                step = self.live[number]
                value = value_at(record, step)
                pruned = self.engine.report(number, step, {"ndcg_at_10": value, "latency_ms": 5.0})
                self.trace.append((number, step, bool(pruned)))
                if pruned:
                    self.engine.tell_pruned(number, now=now)
                    del self.live[number]
                elif step + 1 == steps_of(number):
                    self.engine.tell_succeeded(number, {"ndcg_at_10": value, "latency_ms": 5.0}, now=now)
                    del self.live[number]
                else:
                    self.live[number] = step + 1
            while len(self.live) < PARALLELISM and len(self.engine.records) < TRIALS:
                self.live[self.engine.ask(now=now).number] = 0


def restarted(engine: Engine, spec: JobSpec, keep_intermediate: int = 100) -> Engine:
    """The engine an operator rebuilds from the job's Trial objects (as the API would return them)."""
    records = []
    for record in engine.records:
        trial = trial_manifest(TUNINGJOB, record.number, record.params, record.started_at, record.system_attrs)
        status = trial_status(record, 1, f"job-{record.number}-1", keep_intermediate)
        stored = json.loads(json.dumps({**trial, "status": {k: v for k, v in status.items() if v is not None}}))
        records.append(record_from_trial(stored))
    return Engine(spec, records)


@pytest.mark.parametrize("scenario", list(PRUNERS))
def test_a_rebuilt_engine_gives_every_trial_the_verdict_the_original_would_have(
        make_spec: Callable[..., JobSpec], scenario: str) -> None:
    pruner, multi = PRUNERS[scenario]
    spec = make_spec(multi=multi, pruner=pruner, sampler={"name": "random", "seed": 3},
                     budget={"maxTrials": TRIALS, "parallelism": PARALLELISM})
    original = Simulation(Engine(spec))
    original.run(until_round=RESTART_ROUND)
    running = [original.engine.record(number) for number in original.live]
    assert any(len(record.intermediate) > 100 for record in running), "the restart must come past step 100"
    assert any(record.state is TrialState.SUCCEEDED for record in original.engine.records)

    rebuilt = Simulation(restarted(original.engine, spec), original.live)
    restored = [(dict(r.intermediate), dict(r.system_attrs)) for r in rebuilt.engine.records]
    kept = [(dict(r.intermediate), dict(r.system_attrs)) for r in original.engine.records]
    original.trace.clear()
    original.run()
    rebuilt.run()

    assert rebuilt.trace == original.trace
    assert any(pruned for _, _, pruned in original.trace), "the pruner must act after the restart"
    assert [r.state for r in rebuilt.engine.records] == [r.state for r in original.engine.records]
    assert restored == kept  # every step and the pruner's state came back from the Trial objects


def journal(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


@pytest.mark.parametrize("scenario", ["hyperband", "multi-objective successive_halving", "multi-objective median"])
def test_an_engine_resumed_from_its_journal_gives_every_trial_the_verdict_the_original_would_have(
        make_spec: Callable[..., JobSpec], scenario: str, tmp_path: Path) -> None:
    """`ktune run --resume`: the journal alone (no records) brings back the steps and the pruner's state,
    a multi-objective job's running trials' steps included (they live in the shadow study)."""
    pruner, multi = PRUNERS[scenario]
    spec = make_spec(multi=multi, pruner=pruner, sampler={"name": "random", "seed": 3},
                     budget={"maxTrials": TRIALS, "parallelism": PARALLELISM})
    original = Simulation(Engine(spec, storage=journal(tmp_path / "journal.log"), study_name="job"))
    original.run(until_round=RESTART_ROUND)
    # Resume from a copy, so that the two engines do not share one study.
    shutil.copy(tmp_path / "journal.log", tmp_path / "copy.log")
    resumed = Simulation(Engine(spec, storage=journal(tmp_path / "copy.log"), study_name="job"), original.live)
    restored = [(dict(r.intermediate), dict(r.system_attrs)) for r in resumed.engine.records]
    kept = [(dict(r.intermediate), dict(r.system_attrs)) for r in original.engine.records]
    original.trace.clear()
    original.run()
    resumed.run()

    assert resumed.trace == original.trace
    assert any(pruned for _, _, pruned in original.trace)
    assert restored == kept
