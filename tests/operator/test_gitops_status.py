"""A TuningJob's status as GitOps tools read it: kstatus's rules and the README's Argo CD health check.

Each status below is what the operator writes (one reconcile pass at a time against the fake API). kstatus's
rules are re-stated from sigs.k8s.io/cli-utils pkg/kstatus/status (`Compute`: generic rules, then -- a custom
resource has no type-specific ones -- the `Ready` condition, else Current); Argo CD's health check is the Lua
snippet of README.md itself, run by a real Lua interpreter (lupa).
"""

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml

from ktune.operator.inspection import job_summary, jobs_table, settled
from tests.operator.test_reconcile import NOW, Harness, job_body

README = Path(__file__).resolve().parents[2] / "README.md"
CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's verdict on a custom resource (cli-utils pkg/kstatus/status `Compute`), re-stated."""
    metadata, status = obj["metadata"], obj.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return TERMINATING
    # checkGeneration: only when both are there, and any difference means the spec is not reconciled yet
    if metadata.get("generation") is not None and status.get("observedGeneration") is not None and \
            status["observedGeneration"] != metadata["generation"]:
        return IN_PROGRESS
    conditions = status.get("conditions") or []
    for condition in conditions:  # the "abnormal-true" conditions
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return IN_PROGRESS
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return FAILED
    for condition in conditions:  # checkReadyCondition: False and Unknown are both InProgress
        if condition["type"] == "Ready":
            return CURRENT if condition["status"] == "True" else IN_PROGRESS
    return CURRENT  # no known condition at all: kstatus takes the resource as current


def argocd_health_lua() -> str:
    """The health check the README tells Argo CD users to add to argocd-cm."""
    block = re.search(r"<!-- argocd-health-lua -->\n```yaml\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md lost its Argo CD health snippet (marked <!-- argocd-health-lua -->)"
    data = yaml.safe_load(block.group(1))["data"]
    return str(data["resource.customizations.health.ktune.dev_TuningJob"])


def argocd_health(obj: dict[str, Any]) -> str:
    """What Argo CD shows for `obj`: the snippet run as Argo CD runs it, with the object as the global `obj`."""
    lua = lupa.LuaRuntime()
    lua.globals().obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    health = lua.execute(argocd_health_lua())
    assert health.status in {"Healthy", "Progressing", "Degraded", "Suspended"}, health.status
    return str(health.status)


def run(body: dict[str, Any], steps: Callable[[Harness], None] | None = None) -> dict[str, Any]:
    """The job as the API server holds it after the operator's passes (`steps` drives its pods)."""
    harness = Harness(body)
    harness.tick()
    if steps is not None:
        steps(harness)
    harness.tick(NOW + 1)
    return harness.body


def finish_all(harness: Harness, exit_code: int = 0) -> None:
    for name in list(harness.cluster.pods):
        harness.cluster.finish_pod(name, json.dumps({"score": 0.5}), exit_code=exit_code,
                                   reason="Completed" if exit_code == 0 else "Error")


def edited(body: dict[str, Any]) -> dict[str, Any]:
    """The finished job right after its author raised maxTrials: a generation the operator has not observed."""
    body = copy.deepcopy(body)
    body["metadata"]["generation"] += 1
    body["spec"]["budget"]["maxTrials"] += 1
    return body


def unseen() -> dict[str, Any]:
    body = job_body(max_trials=2)
    body["status"] = {}
    return body


def deleting(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    return body


CASES: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    # ktune's state: (the job as the operator leaves it, kstatus, Argo CD)
    "not yet seen by the operator": (unseen, CURRENT, "Progressing"),
    "Running": (lambda: run(job_body(max_trials=2)), IN_PROGRESS, "Progressing"),
    "Suspended": (lambda: run(job_body(max_trials=2, suspend=True)), IN_PROGRESS, "Suspended"),
    "Succeeded": (lambda: run(job_body(max_trials=2), finish_all), CURRENT, "Healthy"),
    "Failed": (lambda: run(job_body(max_trials=1, parallelism=1), lambda h: finish_all(h, 1)), FAILED, "Degraded"),
    "Invalid": (lambda: run(job_body(budget={"maxTrials": 0, "parallelism": 1})), FAILED, "Degraded"),
    "Succeeded, spec edited since": (lambda: edited(run(job_body(max_trials=2), finish_all)), IN_PROGRESS,
                                     "Progressing"),
    "Succeeded, being deleted": (lambda: deleting(run(job_body(max_trials=2), finish_all)), TERMINATING, "Healthy"),
}


@pytest.mark.parametrize("state", list(CASES))
def test_kstatus_and_argocd_read_each_state_of_a_job_as_documented(state: str):
    make, expected_kstatus, expected_argocd = CASES[state]
    job = make()
    assert (kstatus(job), argocd_health(job)) == (expected_kstatus, expected_argocd)


def test_the_job_phases_behind_the_table():
    assert run(job_body(max_trials=2))["status"]["phase"] == "Running"
    assert run(job_body(max_trials=2, suspend=True))["status"]["phase"] == "Suspended"
    assert run(job_body(max_trials=2), finish_all)["status"]["phase"] == "Succeeded"
    failed = run(job_body(max_trials=1, parallelism=1), lambda h: finish_all(h, 1))["status"]
    assert failed["phase"] == "Failed"
    invalid = run(job_body(budget={"maxTrials": 0, "parallelism": 1}))["status"]
    assert invalid["phase"] == "Failed" and any(c["type"] == "Invalid" and c["status"] == "True"
                                                for c in invalid["conditions"])


def test_ready_and_stalled_carry_the_observed_generation_and_the_reason():
    body = job_body(max_trials=2)
    body["metadata"]["generation"] = 4
    status = run(body, finish_all)["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["observedGeneration"] == 4
    assert {c["observedGeneration"] for c in status["conditions"]} == {4}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "MaxTrialsReached")
    assert conditions["Stalled"]["status"] == "False"
    running = {c["type"]: c for c in run(job_body(max_trials=2, suspend=True))["status"]["conditions"]}
    assert (running["Ready"]["status"], running["Ready"]["reason"]) == ("False", "JobSuspended")


def test_the_objective_column_says_what_best_means():
    assert run(job_body(max_trials=2))["status"]["objective"] == "max score"
    multi = job_body(max_trials=2, objectives=[{"metric": "score", "direction": "maximize"},
                                               {"metric": "latency", "direction": "minimize"}])
    del multi["spec"]["objective"]
    multi["spec"]["sampler"] = {"name": "nsga2", "seed": 1}
    assert run(multi)["status"]["objective"] == "max score, min latency"


def test_trial_events_are_recorded_on_the_trial_as_well_as_on_the_job():
    harness = Harness(job_body(max_trials=2, parallelism=2))
    harness.tick()
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    harness.cluster.finish_pod("job-1-1", "", exit_code=1, reason="Error")
    harness.tick(NOW + 1)
    on_trials = {(trial, reason) for trial, _, reason, _ in harness.cluster.trial_events}
    assert on_trials == {("job-0", "TrialStarted"), ("job-1", "TrialStarted"), ("job-0", "TrialSucceeded"),
                         ("job-1", "TrialFailed")}
    on_job = [(reason, message) for _, reason, message in harness.cluster.events if reason.startswith("Trial")]
    assert sorted(on_job) == sorted((reason, message) for _, _, reason, message in harness.cluster.trial_events)


def test_the_job_list_and_its_json_show_each_job_as_the_operator_left_it():
    succeeded = run(job_body(max_trials=2), finish_all)
    succeeded["metadata"]["name"] = "b-done"
    running = run(job_body(max_trials=2))
    running["metadata"]["name"] = "a-running"
    rows = [row.split()[:6] for row in jobs_table([running, succeeded]).splitlines()]
    assert rows == [["NAME", "PHASE", "OBJECTIVE", "BEST", "TRIALS", "RUNNING"],
                    ["a-running", "Running", "max", "score", "0/2", "2"],
                    ["b-done", "Succeeded", "max", "score", "0.5", "2/2"]]
    summary = job_summary(succeeded)
    assert (summary["name"], summary["generation"], summary["status"]["phase"]) == ("b-done", 1, "Succeeded")
    assert "acceptedSpec" not in summary["status"] and "acceptedSpec" in succeeded["status"]
    assert (settled(succeeded), settled(running), settled(edited(succeeded))) == (True, False, False)
