"""Reconcile passes against the fake API: warm start from an earlier job's Trials (read once and kept; other
namespaces only where the admin allows them, and described to nobody), GPU-hour budgets."""

import copy
import json

import pytest

from ktune.algorithms import load_tuningjob
from ktune.operator import warm_start_sources
from ktune.operator.cluster import ApiError
from ktune.operator.inspection import ClusterStudy, status_report
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from ktune.operator.trials import rfc3339, trial_manifest
from ktune.operator.warm_start_sources import WARM_START_FIELD
from ktune.spec.status_schema import tuningjob_status_schema
from tests.operator.fake_cluster import FakeCluster
from tests.operator.test_reconcile import NOW, Harness, job_body

GPU_TEMPLATE = {"spec": {"containers": [{"name": "t", "image": "trainer:1",
                                         "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}


def earlier_job(harness: Harness, xs: list[float], name: str = "earlier", namespace: str = "ns",
                parameter: str = "x") -> None:
    """A finished job in the fake API: its body and one succeeded Trial per x (no pods left)."""
    body = job_body()
    body["metadata"].update(name=name, namespace=namespace, uid=f"{name}-uid")
    body["spec"]["parameters"][0]["name"] = parameter
    harness.cluster.jobs[(namespace, name)] = body
    for number, x in enumerate(xs):
        add_trial(harness, body, number, {parameter: x})


def add_trial(harness: Harness, source: dict, number: int, params: dict) -> None:
    """A succeeded Trial of `source` (score 1 - x)."""
    trial = trial_manifest(source, number, params)
    x = next(iter(params.values()))
    trial["status"] = {"state": "Succeeded", "values": [1 - x], "value": 1 - x, "metrics": {"score": 1 - x},
                       "startTime": rfc3339(NOW - 100), "finishTime": rfc3339(NOW - 50)}
    harness.cluster.trials[trial["metadata"]["name"]] = trial


def warm_started(*sources: dict, max_trials: int = 2) -> dict:
    body = job_body(max_trials=max_trials, parallelism=1)
    body["spec"]["sampler"] = {"name": "tpe", "seed": 3, "options": {"n_startup_trials": 2}}
    body["spec"]["warmStart"] = {"from": list(sources)}
    return body


def with_settings(harness: Harness, **settings: object) -> Harness:
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(**settings), scrape=harness.scrape)
    return harness


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


def test_the_imported_trials_are_read_once_and_a_source_that_changes_or_goes_away_changes_nothing_after():
    def run(change_the_source: bool) -> tuple[dict, dict]:
        harness = Harness(warm_started({"name": "earlier"}, max_trials=3))
        earlier_job(harness, [0.1, 0.2, 0.3])
        first = harness.tick()
        if change_the_source:  # the source gains a trial, then is deleted; the operator restarts in between
            add_trial(harness, harness.cluster.jobs[("ns", "earlier")], 3, {"x": 0.31})
            harness.reconciler = harness.fresh_reconciler()
            harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
            harness.tick(NOW + 10)
            del harness.cluster.jobs[("ns", "earlier")]
            harness.cluster.trials = {n: t for n, t in harness.cluster.trials.items() if n.startswith("job-")}
            harness.reconciler = harness.fresh_reconciler()
        else:
            harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
            harness.tick(NOW + 10)
        harness.cluster.finish_pod("job-1-1", json.dumps({"score": 0.6}))
        last = harness.tick(NOW + 20)
        assert [event[1] for event in harness.cluster.events].count("WarmStarted") == 1
        assert "WarmStartSkipped" not in [event[1] for event in harness.cluster.events]
        return first, last | {"params": [harness.cluster.trials[f"job-{n}"]["spec"]["params"] for n in range(3)]}

    first, changed = run(change_the_source=True)
    _, unchanged = run(change_the_source=False)
    kept = json.loads(first[WARM_START_FIELD])
    assert kept == {"parameters": ["x"], "trials": [[[0.1], [0.9]], [[0.2], [0.8]], [[0.3], [0.7]]], "dropped": 0}
    assert changed[WARM_START_FIELD] == first[WARM_START_FIELD]
    assert changed["importedTrials"] == 3
    assert changed["params"] == unchanged["params"]  # the same study, hence the same suggestions


def test_a_source_trial_owned_by_another_job_of_that_name_is_not_imported():
    harness = Harness(warm_started({"name": "earlier"}))
    earlier_job(harness, [0.1, 0.2])
    harness.cluster.trials["earlier-1"]["metadata"]["ownerReferences"][0]["uid"] = "an-older-earlier"
    assert harness.tick()["importedTrials"] == 1


def test_past_the_cap_imported_trials_are_dropped_and_the_event_says_so(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(warm_start_sources, "TRIALS_KEPT", 2)
    harness = Harness(warm_started({"name": "earlier"}))
    earlier_job(harness, [0.1, 0.2, 0.3, 0.9])
    harness.body["spec"]["parameters"][0]["high"] = 0.5
    status = harness.tick()
    assert (status["importedTrials"], status["importedTrialsDropped"]) == (2, 2)
    assert len(json.loads(status[WARM_START_FIELD])["trials"]) == 2
    assert ("Normal", "WarmStarted", "imported 2 trials (2 dropped: outside this job's space or without its "
                                     "objective, 1 past the cap of 2 trials or 256 KiB)") in harness.cluster.events


def test_a_source_in_another_namespace_makes_the_job_invalid_unless_the_admin_allows_them():
    harness = Harness(warm_started({"name": "earlier"}, {"name": "earlier", "namespace": "team-b"}))
    earlier_job(harness, [0.1], namespace="team-b")
    status = harness.tick()
    assert status["phase"] == "Failed"
    assert "spec.warmStart.from[1]: team-b/earlier is in another namespace" in status["message"]
    assert "cross_namespace_warm_start (chart settings.crossNamespaceWarmStart)" in status["message"]
    assert "from[0]" not in status["message"]
    assert not [name for name in harness.cluster.trials if name.startswith("job-")]
    assert WARM_START_FIELD not in status


class Forbidding(FakeCluster):
    """A fake API that refuses the operator reads of TuningJobs called `forbidden`."""

    def get_job(self, namespace: str, name: str) -> dict | None:
        if name == "forbidden":
            raise ApiError(403, f'tuningjobs.ktune.dev "forbidden" is forbidden: cannot get in "{namespace}"')
        return super().get_job(namespace, name)


def test_a_skipped_source_in_another_namespace_is_described_the_same_whatever_the_reason():
    harness = Harness(warm_started(*({"name": name, "namespace": "team-b"}
                                     for name in ("missing", "forbidden", "other-space", "earlier")),
                                   {"name": "gone"}, {"name": "forbidden"}))
    harness.cluster = Forbidding()
    with_settings(harness, cross_namespace_warm_start=True)
    earlier_job(harness, [0.1, 0.2], namespace="team-b")
    earlier_job(harness, [0.5], name="other-space", namespace="team-b", parameter="secret_knob")

    status = harness.tick()
    assert status["phase"] != "Failed" and status["importedTrials"] == 2  # team-b/earlier
    skipped = [message for _, reason, message in harness.cluster.events if reason == "WarmStartSkipped"]
    same = ("skipped, a TuningJob in another namespace is imported only when it exists, this operator may read "
            "it, and it has this job's parameter names and types")
    assert skipped == [f"team-b/{name}: {same}" for name in ("missing", "forbidden", "other-space")] + [
        "ns/gone: no such TuningJob", "ns/forbidden: the operator may not read it (403: tuningjobs.ktune.dev "
        '"forbidden" is forbidden: cannot get in "ns")']
    assert "secret_knob" not in json.dumps(harness.cluster.events)


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


def test_the_kept_trials_fit_the_crds_cap_of_the_field_whatever_their_values(monkeypatch: pytest.MonkeyPatch):
    assert tuningjob_status_schema()["properties"][WARM_START_FIELD]["maxLength"] == warm_start_sources.TEXT_LIMIT
    monkeypatch.setattr(warm_start_sources, "TEXT_LIMIT", 2000)
    harness = Harness(warm_started({"name": "earlier"}))
    earlier_job(harness, [i / 1000 + 1e-9 for i in range(200)])
    status = harness.tick()
    assert len(status[WARM_START_FIELD]) <= 2000 < len(status[WARM_START_FIELD]) + 40
    assert status["importedTrials"] + status["importedTrialsDropped"] == 200
