"""Reconcile passes against the fake API: warm start from an earlier job's Trials, GPU-hour budgets."""

import copy
import json

from ktune.algorithms import load_tuningjob
from ktune.operator.inspection import ClusterStudy, status_report
from ktune.operator.trials import rfc3339, trial_manifest
from tests.operator.test_reconcile import NOW, Harness, job_body

GPU_TEMPLATE = {"spec": {"containers": [{"name": "t", "image": "trainer:1",
                                         "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}


def earlier_job(harness: Harness, xs: list[float]) -> None:
    """A finished job `earlier` in the fake API: its body and one succeeded Trial per x (no pods left)."""
    body = job_body()
    body["metadata"].update(name="earlier", uid="earlier-uid")
    harness.cluster.jobs[("ns", "earlier")] = body
    for number, x in enumerate(xs):
        trial = trial_manifest(body, number, {"x": x})
        trial["status"] = {"state": "Succeeded", "values": [1 - x], "value": 1 - x, "metrics": {"score": 1 - x},
                           "startTime": rfc3339(NOW - 100), "finishTime": rfc3339(NOW - 50)}
        harness.cluster.trials[trial["metadata"]["name"]] = trial


def test_a_warm_started_job_imports_the_earlier_jobs_trials_and_counts_the_dropped_ones():
    spec = job_body(max_trials=2, parallelism=1)["spec"]
    spec["parameters"][0]["high"] = 0.5
    spec["sampler"] = {"name": "tpe", "seed": 3, "options": {"n_startup_trials": 2}}
    spec["warmStart"] = {"from": [{"name": "earlier"}, {"name": "gone"}]}
    body = job_body()
    body["spec"] = spec
    harness = Harness(body)
    earlier_job(harness, [0.1, 0.2, 0.3, 0.9])

    status = harness.tick()
    assert (status["importedTrials"], status["importedTrialsDropped"]) == (3, 1)
    assert sorted(name for name in harness.cluster.trials if name.startswith("job-")) == ["job-0"]
    assert ("Warning", "WarmStartSkipped", "ns/gone: no such TuningJob") in harness.cluster.events
    assert ("Normal", "WarmStarted", "imported 3 trials (1 dropped: outside this job's space or without its "
                                     "objective)") in harness.cluster.events

    restarted = copy.deepcopy(harness.cluster.trials["job-0"]["spec"]["params"])
    harness.reconciler = harness.fresh_reconciler()  # an operator restart rebuilds the same study
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    status = harness.tick(NOW + 10)
    assert status["importedTrials"] == 3
    assert harness.cluster.trials["job-0"]["spec"]["params"] == restarted
    assert sum(event[1] == "WarmStarted" for event in harness.cluster.events) == 1  # announced once


def test_a_gpu_hour_budget_smaller_than_two_trials_ends_the_job_after_the_first():
    body = job_body(max_trials=5, parallelism=2)
    body["spec"]["budget"]["maxGpuHours"] = 0.03  # 108 GPU-seconds; one trial of 60 s on 2 GPUs takes 120
    body["spec"]["trial"]["template"] = GPU_TEMPLATE
    harness = Harness(body)
    status = harness.tick(NOW)
    assert sorted(harness.cluster.trials) == ["job-0"]  # no estimate yet: one trial alone
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    status = harness.tick(NOW + 60)
    assert status["phase"] == "Succeeded"
    assert status["gpuHoursUsed"] == round(120 / 3600, 6) and status["cpuHoursUsed"] == round(60 / 3600, 6)
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert succeeded["reason"] == "BudgetExhausted"
    assert "0.03333 of 0.03 GPU-hours used (maxGpuHours" in succeeded["message"]
    assert sorted(harness.cluster.trials) == ["job-0"]


def test_ktune_status_shows_the_imported_trials_and_the_hours_used():
    body = job_body()
    body["status"] = {"phase": "Succeeded", "trials": "1/3", "importedTrials": 7, "importedTrialsDropped": 2,
                      "gpuHoursUsed": 0.5, "cpuHoursUsed": 2.25}
    report = status_report(ClusterStudy(body, load_tuningjob(job_body()).spec, []))
    assert "Warm start: 7 imported trials (2 dropped)" in report
    assert "Hours used: 0.5 GPU, 2.25 CPU" in report
