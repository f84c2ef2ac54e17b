"""`ktune import-katib`: Katib's published example experiments become valid TuningJobs."""

import io
from pathlib import Path

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.cli.katib import KatibError, convert_experiment, import_katib
from ktune.log_metrics import LogParser
from ktune.metrics import TrialMetrics
from ktune.spec import kube_yaml

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((Path(__file__).parent / "fixtures" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_katib_example_converts_to_a_tuningjob_that_validates(path):
    out, err = io.StringIO(), io.StringIO()
    assert import_katib(str(path), out, err) == 0, err.getvalue()
    job = load_tuningjob(yaml.safe_load(out.getvalue()))
    assert job.name == path.stem
    assert job.spec.budget.max_trials == yaml.safe_load(path.read_text())["spec"]["maxTrialCount"]
    assert "carried over" in err.getvalue()  # what changed, or what could not be carried over at all


def test_trial_parameters_become_ktune_parameter_variables():
    template = convert_experiment(load("random")).tuningjob["spec"]["trial"]["template"]
    command = template["spec"]["containers"][0]["command"]
    assert "--lr=$(KTUNE_PARAM_LR)" in command
    assert "--num-layers=$(KTUNE_PARAM_NUM_LAYERS)" in command
    assert not any("${" in part for part in command)


def test_objective_metrics_and_budget_are_carried_over():
    spec = convert_experiment(load("optuna-distribution")).tuningjob["spec"]
    assert spec["objective"] == {"metric": "loss", "direction": "minimize", "goal": 0.05}
    assert spec["budget"] == {"maxTrials": 12, "parallelism": 3, "maxFailedTrials": 3}
    batch = next(p for p in spec["parameters"] if p["name"] == "batch_size")
    assert batch == {"name": "batch_size", "type": "int", "low": 32, "high": 64, "log": True}
    lr = next(p for p in spec["parameters"] if p["name"] == "lr")
    assert lr["step"] == 0.1
    momentum = next(p for p in spec["parameters"] if p["name"] == "momentum")
    assert momentum["high"] == 0.901


def test_algorithms_map_to_samplers_with_their_settings():
    assert convert_experiment(load("tpe")).tuningjob["spec"]["sampler"] == {
        "name": "tpe", "seed": 7, "options": {"n_startup_trials": 5, "n_ei_candidates": 24}}
    assert convert_experiment(load("multivariate-tpe")).tuningjob["spec"]["sampler"]["options"] == {
        "multivariate": True}
    assert convert_experiment(load("sobol")).tuningjob["spec"]["sampler"]["name"] == "qmc"
    assert convert_experiment(load("cmaes")).tuningjob["spec"]["sampler"]["options"] == {"sigma0": 0.2}


def test_medianstop_becomes_the_median_pruner():
    pruner = convert_experiment(load("median-stop")).tuningjob["spec"]["pruner"]
    assert pruner == {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 4}}


def test_hyperband_becomes_random_sampling_with_the_hyperband_pruner_and_says_so():
    conversion = convert_experiment(load("hyperband"))
    spec = conversion.tuningjob["spec"]
    assert spec["sampler"]["name"] == "random"
    assert spec["pruner"] == {"name": "hyperband", "options": {"max_resource": 2, "reduction_factor": 2}}
    epochs = next(p for p in spec["parameters"] if p["name"] == "num_epochs")
    assert epochs == {"name": "num_epochs", "type": "categorical", "choices": [1]}
    assert any("resource `num-epochs`" in note for note in conversion.notes)


def test_dropped_settings_are_named_in_the_notes():
    notes = convert_experiment(load("bayesianoptimization")).notes
    assert any("acq_func" in note for note in notes)
    assert any("StdOut collector becomes spec.metricsSource type logs" in note for note in notes)


def test_neural_architecture_search_is_refused_with_the_reason():
    experiment = load("random")
    experiment["spec"]["algorithm"] = {"algorithmName": "darts"}
    with pytest.raises(KatibError, match="architecture search"):
        convert_experiment(experiment)


def test_an_undefined_trial_parameter_reference_is_refused():
    experiment = load("random")
    experiment["spec"]["trialTemplate"]["trialParameters"].pop()
    with pytest.raises(KatibError, match=r"trialParameters\.optimizer"):
        convert_experiment(experiment)


def test_a_file_that_is_not_an_experiment_exits_2_with_one_line(tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\n")
    out, err = io.StringIO(), io.StringIO()
    assert import_katib(str(path), out, err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "kind: Experiment" in err.getvalue()


def test_an_unreadable_file_exits_2(tmp_path):
    err = io.StringIO()
    assert import_katib(str(tmp_path / "missing.yaml"), io.StringIO(), err) == 2
    assert "cannot read" in err.getvalue()


def test_katibs_default_stdout_collector_becomes_the_log_source_and_reads_katibs_lines():
    conversion = convert_experiment(load("random"))
    source = conversion.tuningjob["spec"]["metricsSource"]
    assert source == {"type": "logs", "stepMetric": "step"}
    assert any("stepMetric" in note for note in conversion.notes)
    job = load_tuningjob(conversion.tuningjob)
    parser = LogParser(job.spec.metrics_source.format, job.spec.metrics_source.filter,
                       job.spec.metrics_source.step_metric)
    # What Katib's mxnet-mnist example prints, the objective named as ktune names it.
    readings = parser.feed(["INFO:root:Epoch[1] Train-accuracy=0.91", "step=1 Validation-accuracy=0.93"])
    assert readings == [TrialMetrics({"train_accuracy": 0.91}, None),
                        TrialMetrics({"validation_accuracy": 0.93}, 1)]
    assert job.spec.objectives[0].metric == "validation_accuracy"


def test_a_stdout_collectors_metrics_format_becomes_the_filter():
    source = convert_experiment(load("stdout-metrics-format")).tuningjob["spec"]["metricsSource"]
    assert source["filter"] == r"([\w|-]+)\s*:\s*((-?\d+)(\.\d+)?)"
    assert LogParser(filter=source["filter"]).feed(["step: 2 loss: 0.5"]) == [TrialMetrics({"loss": 0.5}, 2)]


@pytest.mark.parametrize(("name", "says"), [
    ("file-metrics-collector", "File (/katib/mnist.log): ktune reads no file inside the trial's container"),
    ("file-metrics-collector-with-json-format", "set spec.metricsSource: {type: logs, format: json}"),
])
def test_a_file_collector_is_refused_with_what_to_change_and_the_job_still_converts(name, says):
    out, err = io.StringIO(), io.StringIO()
    assert import_katib(str(Path(__file__).parent / "fixtures" / f"{name}.yaml"), out, err) == 0
    refusals = [line for line in err.getvalue().splitlines() if "cannot be carried over" in line]
    assert len(refusals) == 1 and says in refusals[0]
    assert "metricsSource" not in yaml.safe_load(out.getvalue())["spec"]


def test_optuna_ignored_sampler_settings_are_dropped_with_a_warning_line():
    conversion = convert_experiment(load("cmaes"))
    assert conversion.tuningjob["spec"]["sampler"] == {"name": "cmaes", "seed": 10, "options": {"sigma0": 0.2}}
    assert any(note.startswith("algorithm setting `restart_strategy: ipop` dropped: Optuna's cmaes sampler ignores")
               for note in conversion.notes)


def test_a_pod_trial_converts_like_a_one_pod_job():
    template = convert_experiment(load("pod-trial")).tuningjob["spec"]["trial"]["template"]
    assert template["spec"]["containers"][0]["name"] == "training-container"
    assert "--lr=$(KTUNE_PARAM_LR)" in template["spec"]["containers"][0]["command"]


def test_choices_kubectl_would_misread_stay_strings_in_the_tuningjob_written(tmp_path):
    """The output is read as kubectl reads it: `y`, `0o17` and `1e-5` must be quoted to stay strings."""
    text = (Path(__file__).parent / "fixtures" / "bayesianoptimization.yaml").read_text()
    path = tmp_path / "experiment.yaml"
    path.write_text(text.replace("[sgd, adam, ftrl]", '["y", "0o17", "1e-5"]'))
    out = io.StringIO()
    assert import_katib(str(path), out, io.StringIO()) == 0
    choices = {p.name: p for p in load_tuningjob(kube_yaml.load(out.getvalue())).spec.parameters}["optimizer"]
    assert list(choices.choices) == ["y", "0o17", "1e-5"]


def test_bayesian_optimization_becomes_tpe_as_gp_does_not_run_on_a_cluster():
    conversion = convert_experiment(load("bayesianoptimization"))
    assert conversion.tuningjob["spec"]["sampler"] == {"name": "tpe", "seed": 10, "options": {"n_startup_trials": 10}}
    assert any("GP sampler needs torch" in note for note in conversion.notes)
