"""The check of the SIGKILL test on the cluster: it accepts the params one engine gave with two trials in
flight, and names a trial whose params an engine with another history (or no kill-safe rebuild) gave."""

import json
from typing import Any

import pytest

from ktune.algorithms import load_tuningjob
from ktune.engine import Engine
from ktune.operator.trials import trial_manifest, trial_status
from tests.operator.test_reconcile import job_body
from tests.reliability.rebuilt_suggestions import suggestion_mismatches

SAMPLERS: list[dict[str, Any]] = [{"name": "tpe", "seed": 7, "options": {"n_startup_trials": 3}},
                                   {"name": "random", "seed": 1}, {"name": "grid", "seed": 1}]
GRID = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0, "step": 0.125},
        {"name": "k", "type": "categorical", "choices": ["a", "b"]}]
CONTINUOUS = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}, {"name": "k", "type": "categorical",
                                                                        "choices": ["a", "b"]}]


def trials_of(job: dict[str, Any], engine: Engine) -> dict[int, dict[str, Any]]:
    """The engine's records as the operator stores them in Trial objects (as JSON, through the API)."""
    trials = {}
    for record in engine.records:
        trial = trial_manifest(job, record.number, record.params, record.started_at, record.system_attrs)
        trial["status"] = trial_status(record, 1, None, 100)
        trials[record.number] = json.loads(json.dumps(trial))
    return trials


@pytest.mark.parametrize("sampler", SAMPLERS, ids=[s["name"] for s in SAMPLERS])
def test_params_an_engine_gave_with_two_trials_in_flight_are_what_a_rebuilt_engine_suggests(
    sampler: dict[str, Any],
) -> None:
    job = job_body(parameters=GRID if sampler["name"] == "grid" else CONTINUOUS, sampler=sampler)
    engine = Engine(load_tuningjob(job).spec)
    for number in range(10):
        engine.ask(float(number))
        if number >= 1:
            previous = engine.record(number - 1)
            engine.tell_succeeded(number - 1, {"score": 1.0 - (previous.params["x"] - 0.3) ** 2}, float(number))
    engine.tell_succeeded(9, {"score": 0.5}, 10.0)
    mismatches, matched = suggestion_mismatches(job, trials_of(job, engine))
    assert mismatches == []
    assert sum(matched.values()) == 10


def test_params_a_different_history_gave_are_named() -> None:
    job = job_body(parameters=CONTINUOUS, sampler=SAMPLERS[0])
    engine = Engine(load_tuningjob(job).spec)
    for number in range(8):
        engine.ask(float(number))
        # Every trial but the last is told a score that does not follow from its params: the TPE suggestions
        # after the startup trials follow this history, not the one the Trials show.
        engine.tell_succeeded(number, {"score": float(number % 3)}, float(number))
    trials = trials_of(job, engine)
    for trial in trials.values():
        x = trial["spec"]["params"]["x"]
        trial["status"]["value"] = trial["status"]["values"][0] = 1.0 - (x - 0.3) ** 2
    mismatches, _ = suggestion_mismatches(job, trials)
    assert mismatches and all("a rebuilt engine suggests" in m for m in mismatches)
    # The startup trials are sampled at random, whatever the history: only later ones can differ.
    assert not any(m.startswith(("trial 0 ", "trial 1 ", "trial 2 ")) for m in mismatches)
