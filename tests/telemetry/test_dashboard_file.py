"""The Grafana dashboard file: provisionable by the Grafana sidecar and built on the operator's metric names."""

import json
import re
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "ktune" / "dashboards" / "ktune.json"
OPERATOR_METRICS = {"ktune_trials_total", "ktune_trials_running", "ktune_tuningjob_best_value", "ktune_trial_value",
                    "ktune_trial_param", "ktune_trial_duration_seconds_bucket", "ktune_trial_duration_seconds_sum",
                    "ktune_trial_duration_seconds_count", "ktune_reconcile_duration_seconds_bucket",
                    "ktune_api_errors_total", "ktune_build_info", "process_resident_memory_bytes", "up"}
TRIAL_POD_METRICS = {"ktune_trial_metric"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_dashboard_has_a_fixed_uid_and_no_import_inputs(dashboard):
    assert dashboard["uid"] == "ktune-overview"
    assert "__inputs" not in dashboard
    assert "DS_PROMETHEUS" not in DASHBOARD.read_text()


def test_the_data_source_is_a_prometheus_template_variable_used_by_every_panel(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_namespace_and_job_variables_filter_every_tuningjob_panel(dashboard):
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"namespace", "job"} <= variables
    for panel in panels(dashboard):
        for target in panel["targets"]:
            if "tuningjob" in target["expr"] or "ktune_trial" in target["expr"]:
                assert 'namespace=~"$namespace"' in target["expr"] and 'tuningjob=~"$job"' in target["expr"], (
                    panel["title"])


def test_panels_query_only_metrics_that_ktune_exposes(dashboard):
    names = set()
    for panel in panels(dashboard):
        for target in panel["targets"]:
            names |= set(re.findall(r"\b(ktune_\w+|process_\w+|up)\s*\{", target["expr"]))
    assert names <= OPERATOR_METRICS | TRIAL_POD_METRICS, names - OPERATOR_METRICS - TRIAL_POD_METRICS
    assert names >= TRIAL_POD_METRICS, "the training-curve panel reads the trial pods' gauge"


def test_every_panel_is_described_and_panels_do_not_overlap(dashboard):
    cells = set()
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["description"], panel["title"]
        grid = panel["gridPos"]
        covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                   for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        assert grid["x"] + grid["w"] <= 24
        cells |= covered
