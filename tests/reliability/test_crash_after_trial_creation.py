"""An operator killed between creating a Trial and its first status write loses nothing the rebuild needs: what
the sampler wrote on the trial and its start time are part of the Trial's creation (#13 item 5)."""

import json
from collections.abc import Mapping
from typing import Any

import pytest

from ktune.operator.cluster import ApiError
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from tests.operator.fake_cluster import FakeCluster
from tests.operator.test_reconcile import NOW, job_body

GRID = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
        {"name": "k", "type": "categorical", "choices": ["a", "b"]}]


class CrashAfterCreate(FakeCluster):
    """The first status write after each Trial creation fails, as if the operator died right after the create."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.crashes = 0

    def create_trial(self, namespace: str, trial: Mapping[str, Any]) -> dict[str, Any]:
        created = super().create_trial(namespace, trial)
        self.armed = True
        return created

    def patch_trial_status(self, namespace: str, name: str, status: Mapping[str, Any],
                           resource_version: str | None = None) -> dict[str, Any]:
        if self.armed:
            self.armed = False
            self.crashes += 1
            raise ApiError(503, "the operator was killed here")
        return super().patch_trial_status(namespace, name, status, resource_version)


@pytest.mark.parametrize("sampler", [{"name": "grid"}, {"name": "tpe", "seed": 4, "options": {"n_startup_trials": 2}},
                                     {"name": "random", "seed": 4}])
def test_a_crash_between_trial_creation_and_status_runs_every_configuration_once(sampler: dict):
    cluster = CrashAfterCreate()
    body = job_body(max_trials=10, parallelism=1, parameters=GRID, sampler=sampler)
    now = NOW
    for _ in range(60):
        reconciler = JobReconciler(cluster, OperatorSettings(), scrape=lambda url, timeout: None)  # a fresh process
        try:
            reconciler.reconcile(body, now)
        except ApiError:
            continue
        for name, pod in list(cluster.pods.items()):
            if (pod.get("status") or {}).get("phase") in (None, "Pending"):
                cluster.finish_pod(name, json.dumps({"score": 0.5}))
        body["status"] = json.loads(json.dumps(cluster.job_status))
        now += 10
        if body["status"].get("phase") == "Succeeded":
            break
    assert body["status"]["phase"] == "Succeeded" and cluster.crashes == 10
    params = [trial["spec"]["params"] for trial in cluster.trials.values()]
    assert len(params) == 10
    if sampler["name"] == "grid":
        assert sorted((p["x"], p["k"]) for p in params) == sorted(
            (x, k) for x in (0.0, 0.25, 0.5, 0.75, 1.0) for k in ("a", "b"))
    assert all(trial["status"]["startTime"] for trial in cluster.trials.values())
