"""Faults a cluster routinely has, on the real control plane with the test node agent: the operator killed,
kube-apiserver and etcd restarted, a pod deleted by hand, a node lost, trainers that crash, report NaN, are
OOM-killed or never serve metrics. Each test ends with the job finished: nothing hangs, nothing is lost.

Counts and outcomes are summarised in RELIABILITY.md.
"""

import json
import random
import time
from pathlib import Path

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster

FAULTY_TRAINER = Path(__file__).resolve().parent / "faulty_trainer.py"
KILL_SEED = 8
KILLS = 10


def states(cluster: Cluster, namespace: str, job: str) -> dict[int, tuple[str | None, str | None]]:
    return {number: ((t.get("status") or {}).get("state"), (t.get("status") or {}).get("reason"))
            for number, t in trials_of(cluster, namespace, job).items()}


def finished_values(cluster: Cluster, namespace: str, job: str) -> dict[int, float]:
    return {number: t["status"]["value"] for number, t in trials_of(cluster, namespace, job).items()
            if (t.get("status") or {}).get("state") == "Succeeded"}


def launches_by_trial(launch_log: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in launch_log.read_text().splitlines():
        event, number, *_ = line.split()
        if event == "start":
            counts[number] = counts.get(number, 0) + 1
    return counts


def test_an_operator_sigkilled_ten_times_during_a_30_trial_job_runs_exactly_30_trials_and_keeps_every_result(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    rng = random.Random(KILL_SEED)
    launches = tmp_path / "launches.log"
    apply(cluster, stand_in_job("killed", namespace, budget={"maxTrials": 30, "parallelism": 2},
                                args=["--steps", "4", "--step-seconds", "0.5", "--launch-log", str(launches)]))
    seen: dict[int, float] = {}
    for kill in range(KILLS):
        # Kill at a random moment of this incarnation's work: after it rebuilt the study, within 0-5 s.
        wait_for(lambda kill=kill: operator.log().count("rebuilt the study") > kill, 90,
                 f"operator incarnation {kill + 1} to rebuild the study", operator)
        time.sleep(rng.uniform(0.0, 5.0))
        phase = (get(cluster, "tuningjob", namespace, "killed").get("status") or {}).get("phase")
        assert phase not in ("Succeeded", "Failed"), f"the job finished after only {kill} kills"
        operator.kill()
        for number, value in finished_values(cluster, namespace, "killed").items():
            assert seen.setdefault(number, value) == value, f"trial {number}'s result changed"
        operator.start()
    finished = wait_finished(cluster, namespace, "killed", 300, operator)

    trials = trials_of(cluster, namespace, "killed")
    assert sorted(trials) == list(range(30))
    assert finished["status"]["trialCounts"]["total"] == 30
    assert {t["status"]["state"] for t in trials.values()} == {"Succeeded"}
    assert len({json.dumps(t["spec"]["params"], sort_keys=True) for t in trials.values()}) == 30
    for number, value in seen.items():
        assert trials[number]["status"]["value"] == value, f"trial {number} lost its result"
    assert launches_by_trial(launches) == {str(n): 1 for n in range(30)}, "a trial ran twice"
    assert seen, "no trial finished between the kills: the kills did not hit a working operator"
    print(f"{KILLS} kills; {len(seen)} results seen before the last kill were all kept")
