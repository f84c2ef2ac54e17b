import json
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ktune import contract
from ktune_trainer import report
from ktune_trainer.report import ReportError, TrialReporter, result_json


def test_contract_names_equal_those_of_the_operator():
    for name in (
        "ENV_PARAM_PREFIX",
        "ENV_METRICS_HOST",
        "ENV_METRICS_PORT",
        "ENV_RESULT_PATH",
        "TRIAL_METRIC_GAUGE",
        "TRIAL_STEP_GAUGE",
        "DEFAULT_METRICS_PORT",
        "TERMINATION_LOG",
    ):
        assert getattr(report, name) == getattr(contract, name), name
    assert report.param_env_name("learning_rate") == contract.param_env_name("learning_rate")


def test_the_trainer_package_does_not_import_ktune():
    sources = Path(report.__file__).parent.glob("*.py")
    for source in sources:
        lines = source.read_text().splitlines()
        assert not [
            line
            for line in lines
            if line.startswith(("import ktune\n", "from ktune ", "from ktune.")) or line.strip() in ("import ktune",)
        ], source


def test_reporter_serves_gauges_and_step_from_its_own_registry(tmp_path: Path):
    reporter = TrialReporter.from_env(
        {"KTUNE_METRICS_HOST": "127.0.0.1", "KTUNE_METRICS_PORT": "0", "KTUNE_RESULT_PATH": str(tmp_path / "r.json")}
    )
    assert reporter.start_server()
    try:
        reporter.report(1, {"ndcg_at_10": 0.5, "eval_loss": 0.25})
        reporter.report(2, {"ndcg_at_10": 0.75, "eval_loss": 0.2})
        port = reporter._server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        reporter.stop_server()
    samples = {
        (s.name, s.labels.get("metric")): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert samples == {
        ("ktune_trial_metric", "ndcg_at_10"): 0.75,
        ("ktune_trial_metric", "eval_loss"): 0.2,
        ("ktune_trial_step", None): 2.0,
    }


def test_result_is_compact_json_written_to_the_result_path(tmp_path: Path):
    path = tmp_path / "nested" / "result.json"
    text = TrialReporter(result_path=str(path)).write_result({"ndcg_at_10": 0.7123456789, "model_parameters": 1000.0})
    assert path.read_text() == text == '{"model_parameters":1000,"ndcg_at_10":0.712346}'
    assert json.loads(text) == {"model_parameters": 1000, "ndcg_at_10": 0.712346}


def test_non_finite_values_are_left_out_and_oversized_results_refused():
    assert result_json({"a": float("nan"), "b": float("inf"), "c": 1.5}) == '{"c":1.5}'
    with pytest.raises(ReportError, match="Kubernetes keeps only 4096"):
        result_json({f"metric_{i:04d}": 0.123456 for i in range(400)})


def test_a_bad_port_is_a_clear_error():
    with pytest.raises(ReportError, match="KTUNE_METRICS_PORT='http' is not a port number"):
        TrialReporter.from_env({"KTUNE_METRICS_PORT": "http"})
