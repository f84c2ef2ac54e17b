"""A Trial's `status.intermediateHistory`: every step a pruner may look at, bounded, read back exactly."""

import json
import logging

import pytest

from ktune.engine import TrialRecord, TrialState
from ktune.operator.trials import history_text, parse_history, record_from_trial, trial_manifest, trial_status
from ktune.spec.status_schema import MAX_INTERMEDIATE_HISTORY_LENGTH, MAX_INTERMEDIATE_HISTORY_STEPS

TUNINGJOB = {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob",
             "metadata": {"name": "job", "namespace": "ns", "uid": "job-uid"}}


def stored_trial(record: TrialRecord, keep_intermediate: int = 100) -> dict:
    """The Trial object the operator writes for `record`, as the API gives it back."""
    trial = trial_manifest(TUNINGJOB, record.number, record.params, record.started_at, record.system_attrs)
    status = trial_status(record, 1, "job-0-1", keep_intermediate)
    trial["status"] = {key: value for key, value in status.items() if value is not None}
    return json.loads(json.dumps(trial))


def test_consecutive_steps_are_written_without_their_step_and_gaps_with_it():
    assert history_text({0: 0.5, 1: 0.25, 2: 1e-05, 10: -3.0, 11: 7.0}) == "0:0.5,0.25,1e-05,10:-3.0,7.0"
    assert parse_history("0:0.5,0.25,1e-05,10:-3.0,7.0") == {0: 0.5, 1: 0.25, 2: 1e-05, 10: -3.0, 11: 7.0}
    assert history_text({}) == "" and parse_history("") == {}


def test_every_step_comes_back_exactly_though_status_intermediate_lists_only_the_latest():
    values = {step: 0.1 * step + 1 / 3 for step in range(0, 900, 3)}  # 300 steps, gaps of 3
    record = TrialRecord(number=0, params={"x": 0.5}, state=TrialState.RUNNING, intermediate=values)
    trial = stored_trial(record)
    assert len(trial["status"]["intermediate"]) == 100
    assert record_from_trial(trial).intermediate == values


def test_beyond_ten_thousand_steps_the_earliest_are_dropped():
    values = {step: float(step) / 7 for step in range(MAX_INTERMEDIATE_HISTORY_STEPS + 250)}
    kept = parse_history(history_text(values))
    assert sorted(kept) == list(range(250, MAX_INTERMEDIATE_HISTORY_STEPS + 250))
    assert all(kept[step] == values[step] for step in kept)


def test_the_history_stays_within_the_schema_limit_whatever_the_steps():
    widest = {2**64 + 2 * step: -1.2345678901234567e-300 for step in range(MAX_INTERMEDIATE_HISTORY_STEPS)}
    assert len(str(max(widest))) == 20 and len(repr(-1.2345678901234567e-300)) == 24
    text = history_text(widest)
    assert len(text) <= MAX_INTERMEDIATE_HISTORY_LENGTH
    assert parse_history(text) == widest  # steps of up to 20 digits: all 10,000 fit
    wider = {10**24 + 2 * step: value for step, value in enumerate(widest.values())}
    text = history_text(wider)
    assert len(text) <= MAX_INTERMEDIATE_HISTORY_LENGTH
    kept = parse_history(text)
    assert kept and set(kept) < set(wider) and max(kept) == max(wider)  # fewer, and the latest


def test_a_trial_written_before_the_history_existed_reads_its_latest_steps():
    record = TrialRecord(number=0, params={"x": 0.5}, state=TrialState.RUNNING,
                         intermediate={step: float(step) for step in range(150)})
    trial = stored_trial(record)
    del trial["status"]["intermediateHistory"]
    assert record_from_trial(trial).intermediate == {step: float(step) for step in range(50, 150)}


def test_a_history_edited_by_hand_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture):
    record = TrialRecord(number=0, params={"x": 0.5}, state=TrialState.RUNNING, intermediate={0: 1.0, 1: 2.0})
    trial = stored_trial(record)
    trial["status"]["intermediateHistory"] = "0:1.0,oops"
    with caplog.at_level(logging.WARNING):
        assert record_from_trial(trial).intermediate == {0: 1.0, 1: 2.0}
    assert "status.intermediateHistory" in caplog.text
