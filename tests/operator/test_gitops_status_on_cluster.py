"""Status conventions on the real control plane: `kubectl wait --for=condition=Ready`, the OBJECTIVE column,
Events on Trials, and `ktune status -o json` / `--watch` / no name, as a user runs them."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import KTUNE, OperatorProcess, apply, get, stand_in_job

pytestmark = pytest.mark.cluster


def ktune_status(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KTUNE), "status", *args], capture_output=True, text=True, timeout=60, check=False,
                          env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"})


def test_kubectl_waits_for_ready_and_ktune_status_prints_json_lists_and_watches(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    apply(cluster, stand_in_job("ready", namespace, budget={"maxTrials": 2, "parallelism": 2}))
    invalid = stand_in_job("broken", namespace, budget={"maxTrials": 1, "parallelism": 1})
    invalid["spec"]["trial"]["template"]["spec"]["containers"] = []  # the CRD allows it; ktune's checks do not
    apply(cluster, invalid)
    waited = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "wait", "--for=condition=Ready",
                             "tuningjob/ready", "-n", namespace, "--timeout=180s"],
                            capture_output=True, text=True, timeout=200, check=False)
    assert waited.returncode == 0, waited.stderr + operator.log()[-4000:]
    assert waited.stdout.strip() == "tuningjob.ktune.dev/ready condition met"
    stalled = cluster.kubectl("wait", "--for=condition=Stalled", "tuningjob/broken", "-n", namespace,
                              "--timeout=60s")
    assert "condition met" in stalled.stdout

    job = get(cluster, "tuningjob", namespace, "ready")
    conditions = {c["type"]: c for c in job["status"]["conditions"]}
    assert job["status"]["observedGeneration"] == job["metadata"]["generation"]
    assert conditions["Ready"]["observedGeneration"] == job["metadata"]["generation"]
    assert (conditions["Ready"]["status"], conditions["Stalled"]["status"]) == ("True", "False")

    table = cluster.kubectl("get", "tuningjob", "ready", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "PHASE", "OBJECTIVE", "BEST", "TRIALS"]
    assert table[1].split()[:4] == ["ready", "Succeeded", "max", "score"]

    events = get(cluster, "events", namespace)["items"]
    on_trial = {(e["involvedObject"]["name"], e["reason"]) for e in events if e["involvedObject"]["kind"] == "Trial"}
    assert {("ready-0", "TrialStarted"), ("ready-0", "TrialSucceeded"), ("ready-1", "TrialSucceeded")} <= on_trial

    printed = ktune_status(cluster, "ready", "-n", namespace, "-o", "json")
    assert printed.returncode == 0, printed.stderr
    status = json.loads(printed.stdout)
    assert (status["name"], status["status"]["phase"], status["status"]["objective"]) == \
        ("ready", "Succeeded", "max score")
    assert "acceptedSpec" not in status["status"]
    assert sorted((trial["number"], trial["state"]) for trial in status["trials"]) == \
        [(0, "Succeeded"), (1, "Succeeded")]
    assert status["status"]["bestTrial"]["value"] == max(trial["values"][0] for trial in status["trials"])

    listed = ktune_status(cluster, "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [(item["name"], item["status"]["phase"]) for item in json.loads(listed.stdout)["items"]] == \
        [("broken", "Failed"), ("ready", "Succeeded")]
    rows = ktune_status(cluster, "-n", namespace).stdout.splitlines()
    assert rows[0].split() == ["NAME", "PHASE", "OBJECTIVE", "BEST", "TRIALS", "RUNNING", "MESSAGE"]
    assert [row.split()[:2] for row in rows[1:]] == [["broken", "Failed"], ["ready", "Succeeded"]]

    watched = ktune_status(cluster, "ready", "-n", namespace, "--watch", "--interval", "0.2")
    assert watched.returncode == 0, watched.stderr  # a finished job: printed once, and the watch is over
    assert watched.stdout.startswith(f"TuningJob {namespace}/ready: Succeeded")
    assert watched.stdout.count("TuningJob ") == 1


def test_ktune_status_watch_prints_each_change_until_the_job_finishes(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    apply(cluster, stand_in_job("watched", namespace, budget={"maxTrials": 2, "parallelism": 1}))
    watched = ktune_status(cluster, "watched", "-n", namespace, "-o", "json", "--watch", "--interval", "0.2")
    assert watched.returncode == 0, watched.stderr
    documents = [json.loads(line) for line in watched.stdout.splitlines()]
    assert len(documents) >= 2 and documents[-1]["status"]["phase"] == "Succeeded"
    assert all(document["status"].get("phase") != "Succeeded" for document in documents[:-1])
    assert documents[-1]["generation"] == documents[-1]["status"]["observedGeneration"]
