"""Metrics from log lines (ktune.log_metrics): Katib's name=value pairs, JSON lines, the step, the limits."""

import math

import pytest

from ktune.log_metrics import MAX_LINE_CHARS, MAX_NAMES, LogParser
from ktune.metrics import TrialMetrics


def test_katib_lines_give_one_reading_per_step() -> None:
    parser = LogParser(step_metric="epoch")
    readings = parser.feed(["loading data", "epoch=1 ndcg_at_10=0.31 loss=1.5e-1", "epoch=2 ndcg_at_10=0.35",
                            "Epoch 2 done in 3 s", "epoch=3", "ndcg_at_10 = -0.4"])
    assert readings == [TrialMetrics({"ndcg_at_10": 0.31, "loss": 0.15}, 1), TrialMetrics({"ndcg_at_10": 0.35}, 2),
                        TrialMetrics({"ndcg_at_10": -0.4}, 3)]


def test_json_lines_and_katib_json_strings() -> None:
    parser = LogParser()
    readings = parser.feed(['{"step": 0, "ndcg_at_10": 0.2}', '{"step": "1", "ndcg_at_10": "0.25", "note": "x"}',
                            '{"step": 1, "recall": 0.5, "done": true}'])
    assert readings == [TrialMetrics({"ndcg_at_10": 0.2}, 0), TrialMetrics({"ndcg_at_10": 0.25, "recall": 0.5}, 1)]


def test_format_katib_does_not_read_json_and_json_does_not_read_pairs() -> None:
    assert LogParser(format="katib").feed(['{"step": 1, "a": 2}']) == []
    assert LogParser(format="json").feed(["step=1 a=2"]) == []
    assert LogParser(format="json").feed(['{"step": 1, "a": 2}']) == [TrialMetrics({"a": 2.0}, 1)]


def test_a_custom_filter_reads_its_two_groups() -> None:
    parser = LogParser(filter=r"(\w+):\s*([\d.]+)")
    assert parser.feed(["step: 4 accuracy: 0.9"]) == [TrialMetrics({"accuracy": 0.9}, 4)]


def test_values_before_any_step_have_no_step_and_a_step_value_that_is_not_whole_is_ignored() -> None:
    parser = LogParser()
    assert parser.feed(["acc=0.5", "step=1.5 acc=0.6"]) == [TrialMetrics({"acc": 0.6}, None)]
    assert parser.bad_steps == 1
    assert any("whole number" in warning for warning in parser.warnings())


def test_nan_is_kept_as_nan_and_garbage_is_ignored() -> None:
    parser = LogParser()
    readings = parser.feed(['{"step": 1, "ndcg_at_10": NaN}', "step=2 ndcg_at_10=nan", "=== ]]] {not json",
                            "\x00\xff binary", "step=", '{"step": 1e999}'])
    assert len(readings) == 1 and readings[0].step == 1 and math.isnan(readings[0].values["ndcg_at_10"])
    assert parser.step == 2  # `ndcg_at_10=nan` does not match Katib's number pattern: only the step is read


def test_a_line_over_the_cap_is_ignored_and_counted_once() -> None:
    parser = LogParser()
    huge = "step=9 " + "x=1 " * (MAX_LINE_CHARS // 4 + 1)
    assert parser.feed([huge, huge, "step=1 a=1"]) == [TrialMetrics({"a": 1.0}, 1)]
    assert parser.long_lines == 2
    assert len(parser.warnings()) == 1
    assert parser.warnings() == []  # said once


def test_names_beyond_the_limit_are_dropped_but_the_jobs_own_always_count() -> None:
    parser = LogParser(always={"ndcg_at_10"})
    lines = [f"step=1 name_{i}=1" for i in range(10_000)] + ["step=2 ndcg_at_10=0.4 name_0=2 name_9999=3"]
    readings = parser.feed(lines)
    assert len(parser.names) == MAX_NAMES
    assert parser.dropped_values == 10_000 - MAX_NAMES + 1
    assert len(parser.dropped_names) == MAX_NAMES  # remembered examples stay bounded too
    assert readings[-1] == TrialMetrics({"ndcg_at_10": 0.4, "name_0": 2.0}, 2)
    (warning,) = parser.warnings()
    assert f"first {MAX_NAMES}" in warning


def test_the_state_carries_over_between_feeds() -> None:
    parser = LogParser(step_metric="epoch")
    assert parser.feed(["epoch=5"]) == []
    assert parser.feed(["acc=0.7"]) == [TrialMetrics({"acc": 0.7}, 5)]


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="katib, json"):
        LogParser(format="xml")
