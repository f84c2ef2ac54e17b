"""`spec.trial.queueName` (Kueue): only with a resource, a DNS label; the example reads as a queued Job trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.spec import SpecError

EXAMPLE = Path(__file__).parents[2] / "examples" / "kueue.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_tuningjob(raw)
    return caught.value.problems


def test_the_kueue_example_is_a_job_trial_queued_in_its_local_queue() -> None:
    job = load_tuningjob(example())
    resource = job.spec.trial.resource
    assert resource is not None and (resource.kind, resource.queue_name) == ("Job", "gpu-trials")
    assert job.manifest["spec"]["trial"]["queueName"] == "gpu-trials"


def test_no_queue_name_means_no_queue() -> None:
    raw = example()
    del raw["spec"]["trial"]["queueName"]
    resource = load_tuningjob(raw).spec.trial.resource
    assert resource is not None and resource.queue_name is None


def test_a_queue_name_for_a_pod_trial_is_refused_with_the_fix() -> None:
    raw = example()
    resource = raw["spec"]["trial"].pop("resource")
    raw["spec"]["trial"]["template"] = resource["spec"]["template"]
    [problem] = problems(raw)
    assert problem.startswith("spec.trial.queueName: needs spec.trial.resource")
    assert "use a batch/v1 Job with parallelism 1 as spec.trial.resource" in problem


@pytest.mark.parametrize("name", ["Gpu-Trials", "gpu_trials", "-gpu", "g" * 64, 7])
def test_a_queue_name_must_be_a_dns_label(name: Any) -> None:
    raw = example()
    raw["spec"]["trial"]["queueName"] = name
    [problem] = problems(raw)
    assert problem.startswith("spec.trial.queueName: ")
