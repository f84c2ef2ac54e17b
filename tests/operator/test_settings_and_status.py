"""Operator settings from the environment, and condition bookkeeping."""

import pytest

from ktune.operator.settings import OperatorSettings
from ktune.operator.status import set_condition


def test_settings_come_from_ktune_operator_variables():
    settings = OperatorSettings.from_env({"KTUNE_OPERATOR_RECONCILE_INTERVAL_SECONDS": "0.5",
                                          "KTUNE_OPERATOR_MAX_WORKERS": "4"})
    assert settings.reconcile_interval_seconds == 0.5
    assert settings.max_workers == 4
    assert settings.scrape_timeout_seconds == OperatorSettings().scrape_timeout_seconds


def test_a_bad_setting_names_its_variable():
    with pytest.raises(ValueError, match="KTUNE_OPERATOR_MAX_WORKERS='many' is not a number"):
        OperatorSettings.from_env({"KTUNE_OPERATOR_MAX_WORKERS": "many"})


def test_a_condition_keeps_its_transition_time_until_its_status_changes():
    first = set_condition([], "Running", True, "TrialsRunning", "1/4", 1, "t1")
    again = set_condition(first, "Running", True, "TrialsRunning", "2/4", 2, "t2")
    assert again[0]["lastTransitionTime"] == "t1"
    assert again[0]["message"] == "2/4"
    assert again[0]["observedGeneration"] == 2
    flipped = set_condition(again, "Running", False, "MaxTrialsReached", "done", 2, "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert flipped[0]["status"] == "False"
