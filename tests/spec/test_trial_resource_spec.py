"""`spec.trial.resource`: a batch/v1 Job trial (Indexed for multi-node training), its checks and its hours."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.engine import Engine
from ktune.spec import SpecError

CORPUS = Path(__file__).parents[1] / "fixtures" / "tuningjobs"
HOUR = 3600.0


def indexed() -> dict[str, Any]:
    return yaml.safe_load((CORPUS / "valid" / "indexed-job.yaml").read_text())


def job_spec(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["spec"]["trial"]["resource"]["spec"]


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_tuningjob(raw)
    return caught.value.problems


def test_an_indexed_job_trial_reads_as_a_resource_of_two_pods_whose_template_is_the_jobs() -> None:
    raw = indexed()
    trial = load_tuningjob(raw).spec.trial
    assert trial.resource is not None
    assert (trial.resource.api_version, trial.resource.kind, trial.resource.indexed) == ("batch/v1", "Job", True)
    assert trial.pods == 2
    assert trial.template == job_spec(raw)["template"]
    filled = trial.resource.manifest["spec"]
    assert filled["backoffLimit"] == 0, "ktune's retries re-create the whole Job: the Job retries no pod itself"
    assert load_tuningjob(raw).manifest["spec"]["trial"]["resource"]["spec"]["backoffLimit"] == 0


def test_a_job_without_parallelism_runs_one_pod_and_its_own_backoff_limit_is_kept() -> None:
    raw = indexed()
    spec = job_spec(raw)
    del spec["parallelism"]
    spec["backoffLimit"] = 3
    trial = load_tuningjob(raw).spec.trial
    assert trial.pods == 1 and trial.resource is not None and trial.resource.manifest["spec"]["backoffLimit"] == 3


def test_pods_at_once_are_at_most_the_completions() -> None:
    raw = indexed()
    job_spec(raw)["parallelism"] = 8
    assert load_tuningjob(raw).spec.trial.pods == 2


def test_a_pod_trial_is_one_pod_without_a_resource() -> None:
    trial = load_tuningjob(yaml.safe_load((CORPUS / "valid" / "minimal.yaml").read_text())).spec.trial
    assert trial.resource is None and trial.pods == 1


@pytest.mark.parametrize("field, value, expected", [
    ("parallelism", 0, "spec.trial.resource.spec.parallelism: must be >= 1 (got 0)"),
    ("completions", 0, "spec.trial.resource.spec.completions: must be >= 1 (got 0)"),
    ("parallelism", "2", "spec.trial.resource.spec.parallelism: must be an integer (got '2'); it is quoted"),
    ("completionMode", "Ranked", "spec.trial.resource.spec.completionMode: must be one of NonIndexed, Indexed "
                                 "(got 'Ranked')"),
    ("backoffLimit", -1, "spec.trial.resource.spec.backoffLimit: must be >= 0 (got -1)"),
])
def test_bad_job_fields_are_refused_naming_the_field(field: str, value: Any, expected: str) -> None:
    raw = indexed()
    job_spec(raw)[field] = value
    assert any(problem.startswith(expected) for problem in problems(raw))


def test_an_unsupported_kind_is_refused_with_the_supported_list() -> None:
    raw = indexed()
    raw["spec"]["trial"]["resource"].update(apiVersion="argoproj.io/v1alpha1", kind="Workflow")
    assert problems(raw) == ["spec.trial.resource.kind: unsupported kind 'argoproj.io/v1alpha1' 'Workflow': a trial "
                             "resource is one of: batch/v1 Job, kubeflow.org/v1 PyTorchJob, kubeflow.org/v1 TFJob, "
                             "kubeflow.org/v1 MPIJob, kubeflow.org/v1 XGBoostJob (one pod per trial: use "
                             "spec.trial.template)"]


def test_a_job_of_another_api_version_is_refused() -> None:
    raw = indexed()
    raw["spec"]["trial"]["resource"]["apiVersion"] = "batch/v2"
    assert problems(raw)[0].startswith("spec.trial.resource.kind: unsupported kind 'batch/v2' 'Job'")


def test_the_jobs_pod_template_is_checked_like_a_trial_template() -> None:
    raw = indexed()
    job_spec(raw)["template"]["spec"]["containers"] = []
    assert problems(raw) == ["spec.trial.resource.spec.template.spec.containers: must be a non-empty list "
                             "(got a list of 0)"]
    raw = indexed()
    job_spec(raw)["template"]["spec"]["containers"][0]["args"] = [1]
    assert "spec.trial.resource.spec.template.spec.containers[0].args: must be a list of strings (got a list of 1); " \
           "quote numbers in YAML" in problems(raw)


def test_unknown_fields_of_the_resource_are_refused() -> None:
    raw = indexed()
    raw["spec"]["trial"]["resource"]["spce"] = {}
    assert any(p.startswith("spec.trial.resource.spce: unknown field; did you mean 'spec'?") for p in problems(raw))


def test_a_gpu_budget_needs_gpus_in_the_jobs_pod_template() -> None:
    raw = indexed()
    del job_spec(raw)["template"]["spec"]["containers"][0]["resources"]
    assert problems(raw) == ["spec.budget.maxGpuHours: the trial template requests no nvidia.com/gpu "
                             "(spec.trial.resource.spec.template): set resources.limits.nvidia.com/gpu on its "
                             "containers, or use maxCpuHours"]


def test_gpu_and_cpu_hours_count_every_pod_of_the_trial() -> None:
    raw = indexed()
    container = job_spec(raw)["template"]["spec"]["containers"][0]
    container["resources"] = {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": "500m"}}
    one_pod = copy.deepcopy(raw)
    job_spec(one_pod).update(parallelism=1, completions=1)
    usages = []
    for job in (raw, one_pod):
        engine = Engine(load_tuningjob(job).spec)
        trial = engine.ask(now=0.0)
        engine.tell_succeeded(trial.number, {"ndcg_at_10": 0.5}, now=HOUR)
        usages.append(engine.budget_usage(HOUR))
    assert (usages[0].gpu_hours, usages[0].cpu_hours) == pytest.approx((2.0, 1.0))
    assert (usages[1].gpu_hours, usages[1].cpu_hours) == pytest.approx((1.0, 0.5))


def test_resources_that_are_not_a_mapping_are_a_problem_of_the_hour_budget_not_a_crash() -> None:
    raw = indexed()
    job_spec(raw)["template"]["spec"]["containers"][0]["resources"] = 1
    assert problems(raw) == ["spec.trial.resource.spec.template.spec.containers: resources: a container's resources "
                             "must be a mapping (got int) (needed to account spec.budget's hours)"]
