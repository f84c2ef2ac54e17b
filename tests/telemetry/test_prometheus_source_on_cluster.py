"""`metricsSource: prometheus` for real: the operator reads trial curves from a Prometheus scraping the trial pods.

On the test control plane, Prometheus (Debian's package) scrapes the stand-in trial pods through the chart's
PodMonitor turned into a scrape config (as in test_dashboard_on_prometheus.py), and the operator, allowed that
Prometheus' URL, reads every step from it with range queries. With the median pruner and a curve that is bad
for some x, the bad trials are pruned at the step the pruner judges them on, and every Trial's
`status.intermediate` is what Prometheus holds for its pod: each scraped step once, in order, with its value.
"""

import math
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.chart.helm import one, render
from tests.cluster.controlplane import Cluster, free_port
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    install_manifests,
    stand_in_job,
    trials_of,
    wait_finished,
)
from tests.telemetry.prometheus_server import PrometheusServer, TrialPodTargets, pod_monitor_scrape_config

pytestmark = pytest.mark.cluster

JOB = "promsource"
STEPS = 5
# score = (1 - (x - 0.3)^2) * step / STEPS. The grid sampler (seed 1) draws 0.25 and 0.35 first (the pruner's
# startup trials), then 0.9, 0.3, 0.95, 0.2: the ones far from 0.3 are behind the median at every step.
CHOICES = [0.3, 0.35, 0.25, 0.95, 0.9, 0.2]
PRUNER = {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 0}}


@pytest.fixture
def prometheus_and_operator(cluster: Cluster, node_agent: object, namespace: str,
                            tmp_path: Path) -> Iterator[tuple[PrometheusServer, OperatorProcess]]:
    kubeconfig = install_manifests(cluster)
    pod_monitor = one(render("--set", "metrics.trialPodMonitor.enabled=true",
                             "--set", f"watchNamespaces={{{namespace}}}"), "PodMonitor")
    file_sd = tmp_path / "trial-pods.json"
    targets = TrialPodTargets(cluster.api, namespace, pod_monitor, file_sd)
    prometheus = PrometheusServer(tmp_path / "prometheus",
                                  [pod_monitor_scrape_config("ktune-trials", pod_monitor, file_sd)])
    operator = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log",
                               extra_env={"KTUNE_OPERATOR_ALLOWED_PROMETHEUS_URLS": prometheus.base_url,
                                          "KTUNE_OPERATOR_SCRAPE_TIMEOUT_SECONDS": "5"}).start()
    try:
        yield prometheus, operator
    finally:
        operator.stop()
        targets.stop()
        prometheus.stop()


def held_by_prometheus(prometheus: PrometheusServer, namespace: str, pod: str) -> list[tuple[int, float]]:
    """(step, score) of each step Prometheus holds for the pod, at the first scrape that saw it."""
    selector = f'namespace="{namespace}",tuningjob="{JOB}",pod="{pod}"'
    steps = prometheus.query(f"ktune_trial_step{{{selector}}}[1h]")
    scores = prometheus.query(f'ktune_trial_metric{{{selector},metric="score"}}[1h]')
    score_at = {at: float(value) for series in scores for at, value in series["values"]}
    held: list[tuple[int, float]] = []
    for at, value in sorted((at, value) for series in steps for at, value in series["values"]):
        if math.isfinite(float(value)) and at in score_at and (not held or int(float(value)) > held[-1][0]):
            held.append((int(float(value)), score_at[at]))
    return held


def pruned_at(study: optuna.Study, intermediate: list[tuple[int, float]]) -> tuple[optuna.Trial, int | None]:
    """Replays a trial's steps through Optuna's own median pruner: the first step it prunes at, or None."""
    trial = study.ask()
    for step, value in intermediate:
        trial.report(value, step)
        if trial.should_prune():
            return trial, step
    return trial, None


def test_trials_are_pruned_on_the_steps_prometheus_holds_and_each_trial_keeps_exactly_those(
        cluster: Cluster, namespace: str, prometheus_and_operator: tuple[PrometheusServer, OperatorProcess]):
    prometheus, operator = prometheus_and_operator
    job = stand_in_job(JOB, namespace, parameters=[{"name": "x", "type": "categorical", "choices": CHOICES}],
                       args=["--steps", str(STEPS), "--step-seconds", "1.5"],
                       budget={"maxTrials": len(CHOICES), "parallelism": 1}, pruner=PRUNER,
                       metricsSource={"type": "prometheus", "url": prometheus.base_url})
    job["spec"]["sampler"] = {"name": "grid", "seed": 1}
    job["spec"]["trial"]["metricsPort"] = free_port()  # pod IPs repeat across test sessions; ports need not
    apply(cluster, job)
    finished = wait_finished(cluster, namespace, JOB, timeout=600, operator=operator)
    assert finished["status"]["phase"] == "Succeeded", (finished["status"], operator.log()[-4000:])

    trials = trials_of(cluster, namespace, JOB)
    assert len(trials) == len(CHOICES)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(**PRUNER["options"]))
    states: dict[float, str] = {}
    for number in sorted(trials):  # parallelism 1: each trial ran after the one before had ended
        status = trials[number]["status"]
        x = float(trials[number]["spec"]["params"]["x"])
        states[x] = status["state"]
        intermediate = [(item["step"], item["value"]) for item in status["intermediate"]]
        held = held_by_prometheus(prometheus, namespace, f"{JOB}-{number}-1")
        print(f"trial {number} x={x} {status['state']}: heard {intermediate}; Prometheus holds {held}")
        assert intermediate, f"trial {number} heard no step: {status}"
        # Every step Prometheus holds, once, in order, with the scraped value, up to where the trial stopped
        # listening (pruned; or ended: its last scrape may come after the operator saw the pod succeed).
        assert intermediate == held[:len(intermediate)], (number, intermediate, held)
        trial, step = pruned_at(study, intermediate)
        if status["state"] == "Pruned":
            assert step == intermediate[-1][0], f"trial {number} (x={x}) pruned at {intermediate[-1]}, not {step}"
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            assert (status["state"], step) == ("Succeeded", None), (number, x, status)
            assert len(intermediate) >= len(held) - 1, (number, intermediate, held)
            study.tell(trial, status["value"])
    assert states[0.95] == states[0.9] == "Pruned", states  # far from the best x = 0.3, behind at every step
