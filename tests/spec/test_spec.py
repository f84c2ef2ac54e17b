"""Loading, defaults and problem messages of ktune.spec."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ktune.algorithms import load_tuningjob, validate_files, validate_tuningjob
from ktune.spec import DEFAULTS, MAX_GRID_POINTS, Parameter, SpecError

CORPUS = Path(__file__).parents[1] / "fixtures" / "tuningjobs"


def minimal() -> dict[str, Any]:
    return yaml.safe_load((CORPUS / "valid" / "minimal.yaml").read_text())


def test_minimal_job_gets_every_default_from_the_defaults_table() -> None:
    job = load_tuningjob(minimal())
    spec = job.spec
    assert spec.objectives[0].direction == DEFAULTS["objective.direction"] == "maximize"
    assert spec.objectives[0].goal is None
    assert (spec.sampler.name, spec.sampler.seed, spec.sampler.options) == ("tpe", None, {})
    assert (spec.pruner.name, spec.pruner.options, spec.pruner.metric) == ("none", {}, "ndcg_at_10")
    assert (spec.budget.max_trials, spec.budget.parallelism) == (20, 1)
    assert spec.budget.max_failed_trials is None and spec.budget.active_deadline_seconds is None
    assert (spec.trial.retries, spec.trial.metrics_port) == (0, 9100)
    assert (spec.metrics_source.type, spec.metrics_source.url) == ("direct", None)
    assert spec.parameters[0] == Parameter("learning_rate", "float", 1.0e-5, 1.0e-3, False, None, ())
    assert spec.metrics == () and not spec.multi_objective


def test_manifest_carries_the_filled_defaults_and_the_template_untouched() -> None:
    raw = minimal()
    job = load_tuningjob(raw)
    filled = job.manifest["spec"]
    assert filled["budget"] == {"maxTrials": 20, "parallelism": 1, "maxFailedTrials": None,
                                "activeDeadlineSeconds": None, "maxGpuHours": None, "maxCpuHours": None}
    assert filled["parameters"][0]["log"] is False
    assert filled["trial"]["template"] == raw["spec"]["trial"]["template"]
    assert job.manifest["metadata"] == raw["metadata"]
    assert raw == minimal(), "loading must not modify the caller's object"


def test_int_parameter_defaults_to_step_one() -> None:
    raw = minimal()
    raw["spec"]["parameters"] = [{"name": "epochs", "type": "int", "low": 1, "high": 4}]
    assert load_tuningjob(raw).spec.parameters[0].step == 1


def test_architecture_example_reads_as_documented() -> None:
    spec = load_tuningjob(CORPUS / "valid" / "architecture-example.yaml").spec
    assert spec.objectives[0].goal == 0.95
    assert spec.recorded_metrics == ("ndcg_at_10", "mrr_at_10", "recall_at_10", "eval_loss")
    assert [p.name for p in spec.parameters] == ["learning_rate", "batch_size", "epochs", "warmup_ratio"]
    assert spec.parameters[1].choices == (16, 32, 64)
    assert spec.parameters[3].step == 0.05
    assert spec.sampler.options == {"n_startup_trials": 8}
    assert spec.budget.max_failed_trials == 5 and spec.budget.active_deadline_seconds == 21600


def test_multi_objective_job_prunes_on_the_named_metric_and_dedups_recorded_metrics() -> None:
    spec = load_tuningjob(CORPUS / "valid" / "multi-objective.yaml").spec
    assert spec.multi_objective
    assert spec.objective_metrics == ("ndcg_at_10", "latency_ms")
    assert spec.recorded_metrics == ("ndcg_at_10", "latency_ms", "mrr_at_10")
    assert spec.pruner.metric == "ndcg_at_10"
    assert spec.metrics_source.url == "http://prometheus.monitoring:9090"


def test_all_problems_are_listed_at_once_each_with_its_path() -> None:
    raw = minimal()
    raw["spec"]["objective"]["direction"] = "up"
    raw["spec"]["parameters"].append({"name": "epochs", "type": "int", "low": 5, "high": 1})
    raw["spec"]["budget"] = {"maxTrials": 0}
    raw["spec"]["trial"]["retries"] = -1
    problems = validate_tuningjob(raw)
    assert len(problems) == 4
    assert "spec.objective.direction: must be one of maximize, minimize (got 'up')" in problems
    assert "spec.parameters[1]: low must be < high (got 5 >= 1)" in problems
    assert any(p.startswith("spec.budget.maxTrials:") for p in problems)
    assert any(p.startswith("spec.trial.retries:") for p in problems)
    with pytest.raises(SpecError) as caught:
        load_tuningjob(raw)
    assert caught.value.problems == problems
    assert str(caught.value) == "\n".join(problems)


def test_unknown_option_lists_the_options_the_optuna_constructor_accepts() -> None:
    raw = minimal()
    raw["spec"]["pruner"] = {"name": "median", "options": {"warmup": 2}}
    (problem,) = validate_tuningjob(raw)
    assert problem.startswith("spec.pruner.options.warmup: unknown option for pruner median")
    assert "n_startup_trials, n_warmup_steps" in problem


def test_options_that_take_python_objects_are_not_offered() -> None:
    raw = minimal()
    raw["spec"]["sampler"] = {"name": "tpe", "options": {"gamma": 0.1}}
    (problem,) = validate_tuningjob(raw)
    assert "unknown option for sampler tpe" in problem
    assert "gamma" not in problem.split("allowed:")[1]


def test_bool_is_not_accepted_where_an_integer_is_required() -> None:
    raw = minimal()
    raw["spec"]["budget"] = {"maxTrials": True}
    assert validate_tuningjob(raw) == ["spec.budget.maxTrials: must be an integer (got True)"]


def test_grid_exactly_at_the_limit_is_accepted() -> None:
    raw = minimal()
    raw["spec"]["sampler"] = {"name": "grid"}
    raw["spec"]["parameters"] = [{"name": f"p{i}", "type": "int", "low": 1, "high": 10} for i in range(5)]
    assert MAX_GRID_POINTS == 10**5
    assert validate_tuningjob(raw) == []


def test_cmaes_and_qmc_accept_a_single_objective_job() -> None:
    for name in ("cmaes", "qmc", "random", "nsga2"):  # gp: tests/spec/test_local_only_samplers.py
        raw = minimal()
        raw["spec"]["sampler"] = {"name": name, "seed": 1}
        assert validate_tuningjob(raw) == [], name


@pytest.mark.parametrize("obj", [None, [], 3, {"spec": []}, {"spec": {"parameters": [None]}}, {1: 2}])
def test_junk_objects_raise_spec_error(obj: Any) -> None:
    assert validate_tuningjob(obj)
    with pytest.raises(SpecError):
        load_tuningjob(obj)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: cannot read"):
        load_tuningjob(tmp_path / "nope.yaml")


def test_broken_yaml_names_the_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: not valid YAML: line 2, column 1: expected ',' or ']'"):
        load_tuningjob(path)


def test_two_documents_in_one_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    text = (CORPUS / "valid" / "minimal.yaml").read_text()
    path.write_text(text + "---\n" + text)
    with pytest.raises(SpecError, match="exactly one TuningJob document"):
        load_tuningjob(path)


def test_validate_files_prints_each_verdict_and_returns_1_when_any_is_invalid(
        capsys: pytest.CaptureFixture[str]) -> None:
    good = CORPUS / "valid" / "minimal.yaml"
    bad = CORPUS / "invalid" / "16-log-with-zero-low.yaml"
    assert validate_files([good, bad]) == 1
    out = capsys.readouterr().out
    assert f"{good}: valid TuningJob minimal (1 parameter, sampler tpe, pruner none)" in out
    assert f"{bad}: invalid (1 problem)" in out
    assert "  spec.parameters[0]: low must be > 0 when log is true (got 0)" in out  # 0.0 arrives as 0 (JSON)
    assert validate_files([good]) == 0


def test_the_loaded_template_is_a_copy() -> None:
    raw = minimal()
    job = load_tuningjob(raw)
    template = copy.deepcopy(job.spec.trial.template)
    raw["spec"]["trial"]["template"]["spec"]["containers"][0]["name"] = "changed"
    assert job.spec.trial.template == template


@pytest.mark.parametrize("parameter", [
    {"name": "x", "type": "int", "low": 0, "high": 10**400},
    {"name": "x", "type": "float", "low": -1e308, "high": 1e308},
    {"name": "x", "type": "float", "low": -1e15, "high": 1e15, "step": 1e-300},
])
def test_huge_bounds_and_tiny_steps_are_refused_not_crashed_on(parameter: dict[str, Any]) -> None:
    raw = minimal()
    raw["spec"]["parameters"] = [parameter]
    (problem,) = validate_tuningjob(raw)
    assert problem.startswith("spec.parameters[0].")


def test_explicit_nulls_mean_the_default() -> None:
    raw = minimal()
    raw["spec"]["parameters"][0].update(step=None)
    raw["spec"]["objective"]["goal"] = None
    raw["spec"]["sampler"] = {"name": "tpe", "seed": None}
    raw["spec"]["budget"] = {"maxFailedTrials": None, "activeDeadlineSeconds": None}
    spec = load_tuningjob(raw).spec
    assert spec.parameters[0].step is None and spec.objectives[0].goal is None
    assert spec.budget.max_trials == 20


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("sampler", {"name": "tpe", "options": {"n_ei_candidates": 0}},
     "spec.sampler.options.n_ei_candidates: must be >= 1 (got 0)"),
    ("sampler", {"name": "cmaes", "options": {"sigma0": 0.0}}, "spec.sampler.options.sigma0: must be > 0 (got 0.0)"),
    ("sampler", {"name": "cmaes", "options": {"restart_strategy": "ipop"}},
     "spec.sampler.options.restart_strategy: Optuna ignores this option (deprecated in Optuna 4.4"),
    ("pruner", {"name": "hyperband", "options": {"reduction_factor": 1}},
     "spec.pruner.options.reduction_factor: must be >= 2 (got 1)"),
    ("sampler", {"name": "nsga2", "options": {"population_size": 1}},
     "spec.sampler.options: refused by Optuna: `population_size` must be greater than or equal to 2."),
])
def test_option_values_that_would_fail_mid_job_are_refused_up_front(field: str, value: dict[str, Any],
                                                                     problem: str) -> None:
    raw = minimal()
    raw["spec"][field] = value
    (found,) = validate_tuningjob(raw)
    assert found.startswith(problem)


def test_absurdly_nested_yaml_is_refused_not_crashed_on(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("spec: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(SpecError, match=r"deep\.yaml: nested too deeply"):
        load_tuningjob(path)


def test_suspend_defaults_to_false_and_must_be_a_boolean() -> None:
    assert load_tuningjob(minimal()).spec.suspend is False
    raw = minimal()
    raw["spec"]["suspend"] = True
    job = load_tuningjob(raw)
    assert job.spec.suspend is True and job.manifest["spec"]["suspend"] is True
    raw["spec"]["suspend"] = "yes"
    assert validate_tuningjob(raw) == ["spec.suspend: must be true or false (got 'yes')"]
