"""The operator on the real control plane: kubectl-applied TuningJobs run to the end as pods on the test node.

The operator runs as `ktune operator` in a subprocess with the token of the ServiceAccount from
manifests/operator.yaml, so every test also proves that the shipped RBAC is enough. Trials run the
stand-in trainer (tests/stand_in_trainer.py) except where a test says otherwise.
"""

import subprocess
from pathlib import Path

import kubernetes
import optuna
import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    KTUNE,
    OperatorProcess,
    apply,
    condition,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster


def events_of(cluster: Cluster, namespace: str) -> list[str]:
    """The reasons of the TuningJobs' Events (each trial Event is recorded on its Trial too)."""
    return [event["reason"] for event in get(cluster, "events", namespace)["items"]
            if event["involvedObject"]["kind"] == "TuningJob"]


def score(x: float) -> float:
    return 1.0 - (x - 0.3) ** 2


def test_a_kubectl_applied_tuningjob_succeeds_with_its_best_params_in_status(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    apply(cluster, stand_in_job("search", namespace, budget={"maxTrials": 4, "parallelism": 2}))
    # Read the first trial's pod while it exists: a succeeded pod is deleted once its result is recorded.
    def first_pod() -> dict | None:
        return next((p for p in get(cluster, "pods", namespace)["items"] if p["metadata"]["name"] == "search-0-1"),
                    None)

    pod = wait_for(first_pod, 60, "the first trial's pod", operator)
    waited = cluster.kubectl("wait", "--for=condition=Succeeded", "tuningjob/search", "-n", namespace,
                             "--timeout=150s", check=False, timeout=160)
    assert waited.returncode == 0, waited.stderr + operator.log()[-4000:]

    job = get(cluster, "tuningjob", namespace, "search")
    status = job["status"]
    trials = trials_of(cluster, namespace, "search")
    assert sorted(trials) == [0, 1, 2, 3]
    assert {t["status"]["state"] for t in trials.values()} == {"Succeeded"}
    best = max(trials.values(), key=lambda t: t["status"]["value"])
    assert status["phase"] == "Succeeded"
    assert status["trialCounts"]["succeeded"] == 4
    assert status["trials"] == "4/4"
    assert status["bestTrial"]["name"] == best["metadata"]["name"]
    assert status["bestTrial"]["params"] == best["spec"]["params"]
    assert status["bestTrial"]["value"] == pytest.approx(score(best["spec"]["params"]["x"]))
    assert condition(job, "Succeeded")["reason"] == "MaxTrialsReached"
    assert status["observedGeneration"] == job["metadata"]["generation"]
    assert status["completionTime"] >= status["startTime"]
    reasons = events_of(cluster, namespace)
    assert reasons.count("TrialStarted") == 4 and reasons.count("TrialSucceeded") == 4
    assert "TuningJobSucceeded" in reasons

    trainer = pod["spec"]["containers"][0]
    assert trainer["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "KTUNE_METRICS_HOST", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                     "fieldPath": "status.podIP"}}} in trainer["env"]
    assert pod["metadata"]["ownerReferences"][0]["name"] == "search-0"
    wait_for(lambda: not get(cluster, "pods", namespace)["items"], 30, "the succeeded trials' pods to be deleted",
             operator)
    assert trials[0]["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]

    table = cluster.kubectl("get", "tuningjobs", "-n", namespace).stdout
    assert table.split()[:7] == ["NAME", "PHASE", "OBJECTIVE", "BEST", "TRIALS", "RUNNING", "AGE"]
    assert "Succeeded" in table and "4/4" in table
    trial_table = cluster.kubectl("get", "trials", "-n", namespace).stdout
    assert trial_table.split()[:8] == ["NAME", "JOB", "STATE", "KIND", "PODS", "VALUE", "PARAMS", "AGE"]

    cli_env = {"KUBECONFIG": str(cluster.kubeconfig), "PATH": str(KTUNE.parent)}
    shown = subprocess.run([str(KTUNE), "status", "search", "-n", namespace], capture_output=True, text=True,
                           env=cli_env, timeout=60, check=True).stdout
    assert f"TuningJob {namespace}/search: Succeeded" in shown
    assert len([line for line in shown.splitlines() if line[:1].isdigit() and " Succeeded " in line]) == 4
    database = tmp_path / "study.db"
    subprocess.run([str(KTUNE), "export", "search", "-n", namespace, "--storage", f"sqlite:///{database}"],
                   env=cli_env, timeout=60, check=True, capture_output=True)
    exported = optuna.load_study(study_name=f"{namespace}.search", storage=f"sqlite:///{database}")
    assert len(exported.trials) == 4
    assert exported.best_value == pytest.approx(status["bestTrial"]["value"])


@pytest.mark.slow
def test_a_tuningjob_of_real_tiny_bert_trials_succeeds_with_the_best_learning_rate(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    trainer = str(KTUNE.parent / "ktune-trainer")
    job = stand_in_job(
        "tiny-bert", namespace,
        parameters=[{"name": "learning_rate", "type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True}],
        budget={"maxTrials": 2, "parallelism": 2},
    )
    job["spec"]["objective"] = {"metric": "ndcg_at_10", "direction": "maximize"}
    job["spec"]["metrics"] = ["mrr_at_10", "eval_loss"]
    job["spec"]["trial"]["template"]["spec"]["containers"][0].update({
        "image": "ghcr.io/ktune/trainer:0.1.0",
        "command": [trainer, "train"],
        "args": ["--model=tiny-bert", "--data=synthetic:queries=30,seed=1", "--epochs=1", "--max-train-pairs=200",
                 "--max-length=32", "--device=cpu", "--learning-rate=$(KTUNE_PARAM_LEARNING_RATE)"],
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
    })
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "tiny-bert", 300, operator)
    status = finished["status"]
    assert status["phase"] == "Succeeded", status
    trials = trials_of(cluster, namespace, "tiny-bert")
    assert {t["status"]["state"] for t in trials.values()} == {"Succeeded"}
    best = max(trials.values(), key=lambda t: t["status"]["value"])
    assert status["bestTrial"]["params"] == best["spec"]["params"]
    assert 1.0e-4 <= status["bestTrial"]["params"]["learning_rate"] <= 3.0e-3
    assert 0.0 < status["bestTrial"]["value"] <= 1.0
    assert {"ndcg_at_10", "mrr_at_10", "eval_loss", "test_ndcg_at_10"} <= set(status["bestTrial"]["metrics"])
    # What a user sees (pytest -s shows it; the issue's report quotes it).
    print(cluster.kubectl("get", "tuningjobs,trials", "-A").stdout)
    print(cluster.kubectl("describe", "tuningjob", "tiny-bert", "-n", namespace).stdout)


def test_pruning_reads_the_trials_metrics_and_deletes_the_pruned_pod(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    # x = 1.5 scores below zero at every step, so the threshold pruner stops it from its metrics.
    job = stand_in_job(
        "prune", namespace,
        parameters=[{"name": "x", "type": "categorical", "choices": [0.3, 1.5]}],
        args=["--steps", "8", "--step-seconds", "0.6"],
        sampler={"name": "grid", "seed": 1},
        pruner={"name": "threshold", "options": {"lower": 0.0, "n_warmup_steps": 1}},
        budget={"maxTrials": 2, "parallelism": 2},
    )
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "prune", 120, operator)
    trials = {t["spec"]["params"]["x"]: t for t in trials_of(cluster, namespace, "prune").values()}
    pruned, kept = trials[1.5], trials[0.3]
    assert pruned["status"]["state"] == "Pruned"
    assert pruned["status"]["reason"] == "PrunedByPruner"
    assert pruned["status"]["intermediate"], "the pruned trial's intermediate values were read from /metrics"
    assert all(point["value"] < 0 for point in pruned["status"]["intermediate"])
    assert kept["status"]["state"] == "Succeeded"
    pods = {pod["metadata"]["name"] for pod in get(cluster, "pods", namespace)["items"]}
    assert pruned["status"]["podName"] not in pods  # deleted while it ran
    assert kept["status"]["podName"] not in pods  # deleted once its success was recorded
    assert "TrialPruned" in events_of(cluster, namespace)
    assert finished["status"]["trialCounts"]["pruned"] == 1


def test_a_trainer_that_fails_once_is_retried_and_then_succeeds(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    state_dir = tmp_path / "attempts"
    job = stand_in_job("retry", namespace, retries=1, budget={"maxTrials": 1, "parallelism": 1},
                       args=["--steps", "2", "--step-seconds", "0.2", "--fail-attempts", "1",
                             "--state-dir", str(state_dir)])
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "retry", 90, operator)
    trial = trials_of(cluster, namespace, "retry")[0]
    assert finished["status"]["phase"] == "Succeeded"
    assert trial["status"]["state"] == "Succeeded"
    assert trial["status"]["attempts"] == 2
    # The failed attempt's pod stays for its logs (failed_pod_retention_seconds); the succeeded one is deleted.
    assert get(cluster, "pod", namespace, "retry-0-1")["status"]["phase"] == "Failed"
    wait_for(lambda: [p["metadata"]["name"] for p in get(cluster, "pods", namespace)["items"]] == ["retry-0-1"], 30,
             "only the failed attempt's pod to remain", operator)
    assert "TrialRetried" in events_of(cluster, namespace)


def test_a_trainer_that_always_fails_fails_the_job_at_max_failed_trials(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    job = stand_in_job("broken", namespace, budget={"maxTrials": 6, "parallelism": 1, "maxFailedTrials": 2},
                       args=["--steps", "1", "--step-seconds", "0.1", "--fail-above", "-1"])
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, "broken", 90, operator)
    trials = trials_of(cluster, namespace, "broken")
    assert finished["status"]["phase"] == "Failed"
    failed = condition(finished, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "TooManyFailedTrials")
    assert sorted(trials) == [0, 1]
    assert {(t["status"]["state"], t["status"]["reason"]) for t in trials.values()} == {("Failed", "Error")}
    assert "exit code 1" in trials[0]["status"]["message"]
    assert "TuningJobFailed" in events_of(cluster, namespace)


def test_a_pod_that_no_node_can_take_fails_its_trial_as_unschedulable_after_the_timeout(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    impatient = {"KTUNE_OPERATOR_UNSCHEDULABLE_TIMEOUT_SECONDS": "3"}
    process = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log", (), impatient).start()
    try:
        job = stand_in_job("greedy", namespace, budget={"maxTrials": 1, "parallelism": 1})
        job["spec"]["trial"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 64}}
        apply(cluster, job)
        finished = wait_finished(cluster, namespace, "greedy", 90, process)
    finally:
        process.stop()
    trial = trials_of(cluster, namespace, "greedy")[0]
    assert (trial["status"]["state"], trial["status"]["reason"]) == ("Failed", "Unschedulable")
    assert finished["status"]["phase"] == "Failed"
    assert get(cluster, "pods", namespace)["items"] == []


def test_an_operator_killed_mid_job_and_restarted_runs_exactly_max_trials_and_loses_no_result(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
):
    launches = tmp_path / "launches.log"
    job = stand_in_job("restart", namespace, budget={"maxTrials": 6, "parallelism": 2},
                       args=["--steps", "3", "--step-seconds", "0.4", "--launch-log", str(launches)])
    apply(cluster, job)

    def two_done() -> dict | None:
        trials = trials_of(cluster, namespace, "restart")
        done = {n: t for n, t in trials.items() if t.get("status", {}).get("state") == "Succeeded"}
        running = [t for t in trials.values() if t.get("status", {}).get("state") == "Running"]
        return done if len(done) >= 2 and running else None

    done_before = wait_for(two_done, 90, "two trials to succeed while others run", operator)
    operator.kill()
    operator.start()
    finished = wait_finished(cluster, namespace, "restart", 120, operator)

    trials = trials_of(cluster, namespace, "restart")
    assert sorted(trials) == [0, 1, 2, 3, 4, 5]
    assert finished["status"]["trialCounts"]["total"] == 6
    for number, before in done_before.items():
        assert trials[number]["status"]["value"] == before["status"]["value"]
    starts = [line.split()[:2] for line in launches.read_text().splitlines() if line.split()[0] == "start"]
    started_trials = [number for _, number in starts]
    assert sorted(started_trials) == sorted(set(started_trials)), f"a trial ran twice: {starts}"


def test_the_operator_account_may_not_read_secrets(cluster: Cluster, operator_kubeconfig: Path, namespace: str):
    as_operator = kubernetes.config.new_client_from_config(config_file=str(operator_kubeconfig))
    core = kubernetes.client.CoreV1Api(as_operator)
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.list_namespaced_secret(namespace)
    assert refused.value.status == 403
    answer = cluster.kubectl("auth", "can-i", "get", "secrets", "-A",
                             "--as=system:serviceaccount:ktune-system:ktune-operator", check=False)
    assert answer.stdout.strip() == "no"


def test_jobs_in_two_namespaces_run_at_once(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    other = f"{namespace[:50]}-b"
    cluster.kubectl("create", "namespace", other)
    # No --namespace: all namespaces, as the Deployment runs it (the ClusterRole must allow cluster-wide watches).
    process = OperatorProcess(operator_kubeconfig, [], tmp_path / "operator.log").start()
    try:
        for ns in (namespace, other):
            apply(cluster, stand_in_job("twin", ns, budget={"maxTrials": 2, "parallelism": 2},
                                        args=["--steps", "3", "--step-seconds", "0.5"]))

        def both_running() -> bool:
            return all(any(t.get("status", {}).get("state") == "Running" for t in trials_of(cluster, ns,
                                                                                             "twin").values())
                       for ns in (namespace, other))

        wait_for(both_running, 60, "trials of both jobs to run at the same time", process)
        for ns in (namespace, other):
            assert wait_finished(cluster, ns, "twin", 90, process)["status"]["phase"] == "Succeeded"
    finally:
        process.stop()
        cluster.kubectl("delete", "namespace", other, "--wait=false")


def test_only_the_lease_holder_acts_and_a_standby_takes_over_when_it_dies(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    election = ("--leader-election", "ktune-system")
    fast_lease = {"KTUNE_OPERATOR_LEASE_DURATION_SECONDS": "6"}  # renewals have a deadline of 2 s
    leader = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "leader.log", election, fast_lease)
    standby = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "standby.log", election, fast_lease)
    try:
        leader.start()
        wait_for(lambda: "leading as" in leader.log(), 60, "the first operator to lead", leader)
        standby.start()
        wait_for(lambda: "waiting to lead" in standby.log(), 60, "the second operator to wait", standby)
        apply(cluster, stand_in_job("elected", namespace, budget={"maxTrials": 4, "parallelism": 1},
                                    args=["--steps", "3", "--step-seconds", "0.4"]))

        def one_done() -> bool:
            states = [t.get("status", {}).get("state") for t in trials_of(cluster, namespace, "elected").values()]
            return "Succeeded" in states

        wait_for(one_done, 60, "a trial to succeed under the first leader", leader)
        assert "leading as" not in standby.log()
        assert "rebuilt the study" not in standby.log()
        leader.kill()
        finished = wait_finished(cluster, namespace, "elected", 120, standby)
        assert "leading as" in standby.log()
        assert finished["status"]["phase"] == "Succeeded"
        assert sorted(trials_of(cluster, namespace, "elected")) == [0, 1, 2, 3]
        lease = get(cluster, "lease", "ktune-system", "ktune-operator")
        assert lease["spec"]["holderIdentity"].endswith(f"-{standby.process.pid}")
    finally:
        leader.stop()
        standby.stop()


def test_deleting_a_tuningjob_removes_its_trials_and_pods(cluster: Cluster, namespace: str,
                                                          operator: OperatorProcess):
    apply(cluster, stand_in_job("doomed", namespace, budget={"maxTrials": 4, "parallelism": 2},
                                args=["--steps", "40", "--step-seconds", "0.5"]))
    wait_for(lambda: len(get(cluster, "pods", namespace)["items"]) == 2, 60, "two trial pods", operator)
    cluster.kubectl("delete", "tuningjob", "doomed", "-n", namespace, "--timeout=60s", timeout=70)

    def all_gone() -> bool:
        return not get(cluster, "trials", namespace)["items"] and not get(cluster, "pods", namespace)["items"]

    wait_for(all_gone, 90, "the job's trials and pods to be garbage-collected", operator)


def test_kubectl_explain_teaches_the_tuningjob_api(cluster: Cluster, operator_kubeconfig: Path):
    explained = cluster.kubectl("explain", "tuningjob.spec.parameters").stdout
    assert "KTUNE_PARAM_<NAME>" in explained
    assert "low" in explained and "choices" in explained
    explained = cluster.kubectl("explain", "tuningjob.spec.budget.parallelism").stdout
    assert "at most maxTrials" in explained
