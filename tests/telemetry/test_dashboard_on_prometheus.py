"""Every Grafana dashboard panel returns data from a real Prometheus scraping a real operator run.

On the test control plane: `ktune operator --metrics-port` runs a small TuningJob of stand-in trials
(pods run by the test node agent on 127.0.x.y addresses). Prometheus scrapes the operator and the trial
pods, with the chart's PodMonitor turned into a scrape config as prometheus-operator would (the test
finds the pods through the API server, see `TrialPodTargets`). Then each panel's PromQL, with the
template variables substituted as Grafana would, is run against Prometheus' HTTP API.
"""

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import one, render
from tests.cluster.controlplane import Cluster, free_port
from tests.operator.operator_harness import (
    KTUNE,
    ROOT,
    apply,
    install_manifests,
    stand_in_job,
    trials_of,
    wait_finished,
)
from tests.telemetry.prometheus_server import (
    RATE_INTERVAL,
    PrometheusServer,
    TrialPodTargets,
    finite_values,
    pod_monitor_scrape_config,
)

pytestmark = pytest.mark.cluster

DASHBOARD = ROOT / "charts" / "ktune" / "dashboards" / "ktune.json"
OPERATOR_JOB = "ktune-operator"
JOB = "dash"
MAX_TRIALS = 6
FAIL_ABOVE = 0.9  # trials whose x is above fail (the seeded sampler draws one such x in six trials)
PARAMETERS = [
    {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "layers", "type": "int", "low": 1, "high": 4},
    {"name": "optimizer", "type": "categorical", "choices": ["adamw", "sgd"]},
]


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


def substitute(text: str, variables: dict[str, str]) -> str:
    """Grafana's variable interpolation for `$name` and `${name}` (longest names first)."""
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    leftover = re.findall(r"\$\{?\w+", text)
    assert not leftover, f"unsubstituted variables {leftover} in {text}"
    return text


@pytest.fixture
def tuned(cluster: Cluster, node_agent: object, namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A finished TuningJob whose whole run Prometheus scraped; yields the server and the run's window."""
    kubeconfig = install_manifests(cluster)
    metrics_port = free_port()
    pod_monitor = one(render("--set", "metrics.trialPodMonitor.enabled=true",
                             "--set", f"watchNamespaces={{{namespace}}}"), "PodMonitor")
    file_sd = tmp_path / "trial-pods.json"
    targets = TrialPodTargets(cluster.api, namespace, pod_monitor, file_sd)
    prometheus = PrometheusServer(tmp_path / "prometheus", [
        {"job_name": OPERATOR_JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]},
        pod_monitor_scrape_config("ktune-trials", pod_monitor, file_sd),
    ])
    log_path = tmp_path / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1",
           "KTUNE_OPERATOR_RECONCILE_INTERVAL_SECONDS": "0.5", "KTUNE_OPERATOR_SCRAPE_TIMEOUT_SECONDS": "1"}
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [str(KTUNE), "operator", "--namespace", namespace, f"--metrics-port={metrics_port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        start = time.time()
        job = stand_in_job(JOB, namespace, parameters=PARAMETERS,
                           args=["--steps", "6", "--step-seconds", "0.5", "--fail-above", str(FAIL_ABOVE)],
                           budget={"maxTrials": MAX_TRIALS, "parallelism": 2})
        job["spec"]["trial"]["metricsPort"] = free_port()  # pod IPs repeat across test sessions; ports need not
        apply(cluster, job)
        job = wait_finished(cluster, namespace, JOB, timeout=240)
        assert job["status"]["phase"] == "Succeeded", (job["status"], log_path.read_text()[-4000:])
        states = {n: (t["spec"]["params"]["x"], t["status"]["state"], t["status"].get("reason"),
                      t["status"].get("message")) for n, t in trials_of(cluster, namespace, JOB).items()}
        failed = sorted(n for n, (x, *_) in states.items() if x > FAIL_ABOVE)
        assert [n for n, (_, state, *_) in sorted(states.items()) if state != "Succeeded"] == failed, states
        scraped_at = wait_until_scraped(prometheus, namespace)
        # Range queries end one step after the scrape that saw the finished job, so they include it.
        yield {"prometheus": prometheus, "namespace": namespace, "start": start, "end": scraped_at + 1}
    finally:
        targets.stop()
        operator.terminate()
        operator.wait(timeout=30)
        prometheus.stop()


def wait_until_scraped(prometheus: PrometheusServer, namespace: str, timeout: float = 30) -> float:
    """The time of the first scrape that holds the operator's final counts of the finished job."""
    expr = f'sum(ktune_trials_total{{namespace="{namespace}", tuningjob="{JOB}"}}) == {MAX_TRIALS}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = prometheus.query(f"timestamp({expr})")
        if result:
            return float(result[0]["value"][1])
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never saw {MAX_TRIALS} finished trials:\n{prometheus.log()}")


def test_every_dashboard_panel_and_variable_returns_data_from_a_real_prometheus(tuned: dict[str, Any]):
    prometheus: PrometheusServer = tuned["prometheus"]
    answers = panel_answers(prometheus, tuned["namespace"], JOB, OPERATOR_JOB, tuned["start"], tuned["end"])
    assert sum(answers["Trials by state [A]"]) == MAX_TRIALS
    assert answers["Trials by state [B]"] == [0]
    assert answers["Operator up [A]"] == [1]
    assert answers["Running trials [A]"][-1] == 0
    assert max(answers["Pruned and failed share [A]"]) > 0, "the trials with x > 0.9 fail (seeded sampler)"
    assert answers["Best value over time [A]"][-1] == max(answers["Objective by trial number [A]"])


def panel_answers(prometheus: PrometheusServer, namespace: str, job: str, operator_job: str, start: float,
                  end: float, metric: str = "score", single_objective: bool = True) -> dict[str, list[float]]:
    """Every variable offers the run, and every panel's queries (per `$param`) return finite samples.

    Multi-objective jobs have no best value: that one panel is left out for them (`single_objective`).
    """
    dashboard = json.loads(DASHBOARD.read_text())
    assert_variables_offer_the_run(prometheus, dashboard, namespace, job, metric, operator_job)
    params = sorted(prometheus.label_values("param", f'ktune_trial_param{{namespace="{namespace}"}}'))
    assert params == ["layers", "x"], "numeric parameters only; the categorical one has no series"
    variables = {"datasource": "prometheus", "namespace": namespace, "job": job, "metric": metric,
                 "operator_job": operator_job, "__rate_interval": RATE_INTERVAL}
    answers: dict[str, list[float]] = {}
    for title, target in panel_targets(dashboard):
        if not single_objective and "ktune_tuningjob_best_value" in target["expr"]:
            continue
        for param in params if "$param" in target["expr"] + title else [None]:
            scope = {**variables, "param": param} if param else variables
            expr = substitute(target["expr"], scope)
            result = prometheus.query(expr) if target.get("instant") else prometheus.query_range(expr, start, end)
            label = f"{substitute(title, scope)} [{target['refId']}]"
            answers[label] = finite_values(result)
            assert answers[label], f"panel {label!r} returned no data for:\n{expr}"
    for label, values in answers.items():
        print(f"{label}: {len(values)} samples, last {values[-1]:.6g}, min {min(values):.6g}, max {max(values):.6g}")
    return answers


def variable_values(prometheus: PrometheusServer, dashboard: dict[str, Any],
                    scope: dict[str, str]) -> dict[str, list[str]]:
    """What each query variable's label_values(selector, label) offers, with `scope` substituted."""
    values = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", substitute(query, scope))
        assert match, f"variable {variable['name']}: {query} is not label_values(selector, label)"
        values[variable["name"]] = prometheus.label_values(match.group(2), match.group(1))
    return values


def assert_variables_offer_the_run(prometheus: PrometheusServer, dashboard: dict[str, Any], namespace: str,
                                   job: str = JOB, metric: str = "score", operator_job: str = OPERATOR_JOB) -> None:
    """Each query variable lists this run's namespace, job, objective, parameter, operator."""
    expected = {"namespace": namespace, "job": job, "metric": metric, "param": "x", "operator_job": operator_job}
    offered = variable_values(prometheus, dashboard, {"namespace": namespace, "job": job})
    assert set(offered) == set(expected)
    for name, values in offered.items():
        assert expected[name] in values, f"variable {name} offers {values}"
