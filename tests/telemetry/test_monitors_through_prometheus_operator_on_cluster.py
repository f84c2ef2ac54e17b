"""The chart's ServiceMonitor and PodMonitor through a real prometheus-operator, into a real Prometheus.

`helm install` with metrics.serviceMonitor.enabled and metrics.trialPodMonitor.enabled into a namespace of its own,
watching the test's namespace (the operator runs as the chart's pod on the test node agent, as in
tests/chart/test_chart_on_cluster.py; its target's namespace label is thus not its jobs' namespace, which only
`honorLabels` keeps); prometheus-operator (built from
its pinned module, `prometheus_operator` fixture) renders a Prometheus object's configuration from the monitors;
the test runs Debian's Prometheus with that configuration (see tests/telemetry/operator_config.py for the one
rewrite, Kubernetes discovery fed through files), runs a single- and a multi-objective job, and runs every
dashboard variable and panel with the namespace filter set. The values below are the ones the README's
kube-prometheus-stack walk-through uses, plus 1 s intervals for the test's pace.
"""

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import CHART
from tests.chart.test_chart_on_cluster import RELEASE, adoptable_service_account, operator_log, operator_pod
from tests.cluster.controlplane import Cluster, NodeAgentProcess, free_port
from tests.operator.operator_harness import apply, stand_in_job, wait_finished, wait_for
from tests.telemetry.operator_config import KubernetesTargets, generated_config, with_file_discovery
from tests.telemetry.prometheus_server import PrometheusServer
from tests.telemetry.test_dashboard_on_prometheus import (
    DASHBOARD,
    FAIL_ABOVE,
    PARAMETERS,
    panel_answers,
    variable_values,
)

pytestmark = pytest.mark.cluster

PROMETHEUS = "ktune"
SINGLE, MULTI = "single", "pareto"
TRIALS = 4
PROMETHEUS_VERSION = "v2.42.0"  # Debian's package: the operator renders the configuration for this version


def prometheus_object(namespace: str) -> dict[str, Any]:
    """A Prometheus selecting every monitor of its namespace; no replicas: the test runs Prometheus itself."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
            "metadata": {"name": PROMETHEUS, "namespace": namespace},
            "spec": {"version": PROMETHEUS_VERSION, "replicas": 0, "scrapeInterval": "1s", "evaluationInterval": "1s",
                     "serviceMonitorSelector": {}, "podMonitorSelector": {},
                     "replicaExternalLabelName": "", "prometheusExternalLabelName": ""}}


def job_of(name: str, namespace: str, multi_objective: bool) -> dict[str, Any]:
    job = stand_in_job(name, namespace, parameters=PARAMETERS,
                       args=["--steps", "20", "--step-seconds", "0.5", "--fail-above", str(FAIL_ABOVE)],
                       budget={"maxTrials": TRIALS, "parallelism": 2})
    if multi_objective:
        del job["spec"]["objective"]
        job["spec"]["objectives"] = [{"metric": "score", "direction": "maximize"},
                                     {"metric": "loss", "direction": "minimize"}]
        job["spec"]["metrics"] = ["test_score"]
    job["spec"]["trial"]["metricsPort"] = free_port()
    return job


@pytest.fixture
def installed(cluster: Cluster, node_agent: NodeAgentProcess, prometheus_operator: object, namespace: str,
              tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The chart installed in its own namespace with both monitors, watching the test's `namespace` (so the
    operator's target namespace differs from its jobs'); Prometheus running the operator-generated configuration."""
    release_namespace = f"{namespace}-ktune"
    cluster.kubectl("create", "namespace", release_namespace)
    kubeconfig = adoptable_service_account(cluster, release_namespace)
    cluster.helm(
        "install", RELEASE, str(CHART), "--namespace", release_namespace,
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.trialPodMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.interval=1s", "--set", "metrics.serviceMonitor.scrapeTimeout=1s",
        "--set", "metrics.trialPodMonitor.interval=1s",
        "--set", f"metrics.port={free_port()}", "--set", f"healthPort={free_port()}",
        "--set", "settings.reconcileIntervalSeconds=0.5", "--set", "settings.scrapeTimeoutSeconds=1",
        "--set-json", "extraEnv=" + json.dumps([{"name": "KUBECONFIG", "value": str(kubeconfig)}]),
        timeout=120)  # fmt: skip
    apply(cluster, prometheus_object(release_namespace))
    jobs = [f"serviceMonitor/{release_namespace}/{RELEASE}-operator/0",
            f"podMonitor/{release_namespace}/{RELEASE}-trials/0"]
    config = generated_config(cluster.api, release_namespace, PROMETHEUS, jobs)
    (tmp_path / "generated.json").write_text(json.dumps(config, indent=1))
    fed, discoveries = with_file_discovery(config, tmp_path)
    targets = KubernetesTargets(cluster.api, discoveries)
    prometheus = PrometheusServer(tmp_path / "prometheus", config=fed)
    try:
        wait_for(lambda: operator_pod(cluster, release_namespace), 60, "the chart's operator pod to run")
        wait_for(lambda: prometheus.query(f'up{{job="{RELEASE}-metrics", namespace="{release_namespace}"}} == 1'),
                 60, "Prometheus to scrape the operator through the ServiceMonitor's job")
        yield {"prometheus": prometheus, "config": config, "namespace": namespace,
               "release_namespace": release_namespace}
    finally:
        targets.stop()
        prometheus.stop()
        with contextlib.suppress(AssertionError):
            cluster.helm("uninstall", RELEASE, "--namespace", release_namespace, "--wait", timeout=120)
        cluster.kubectl("delete", "namespace", release_namespace, "--wait=false", check=False)


def test_the_generated_operator_job_honours_the_operators_namespace_label(installed: dict[str, Any]):
    namespace = installed["release_namespace"]
    by_name = {job["job_name"]: job for job in installed["config"]["scrape_configs"]}
    assert by_name[f"serviceMonitor/{namespace}/{RELEASE}-operator/0"]["honor_labels"] is True
    labelmaps = [rule for rule in by_name[f"podMonitor/{namespace}/{RELEASE}-trials/0"]["relabel_configs"]
                 if rule.get("action") == "labelmap"]
    assert {"regex": "__meta_kubernetes_pod_label_ktune_dev_(.+)", "replacement": "$1"}.items() <= (
        labelmaps[-1].items()), labelmaps


def test_every_dashboard_query_answers_through_the_generated_configuration(
    cluster: Cluster, node_agent: NodeAgentProcess, installed: dict[str, Any]
):
    prometheus: PrometheusServer = installed["prometheus"]
    namespace = installed["namespace"]
    start = time.time()
    apply(cluster, job_of(SINGLE, namespace, multi_objective=False))
    apply(cluster, job_of(MULTI, namespace, multi_objective=True))
    assert_variables_fill_from_the_first_running_trial(prometheus, namespace)
    for name in (SINGLE, MULTI):
        job = wait_finished(cluster, namespace, name, timeout=300)
        log = operator_log(node_agent, installed["release_namespace"])
        assert job["status"]["phase"] == "Succeeded", (job["status"], log)
    end = wait_for(lambda: scraped_all(prometheus, namespace), 60, "Prometheus to see both jobs finished") + 1

    release_namespace = installed["release_namespace"]
    operator_jobs = prometheus.label_values("job", f'ktune_build_info{{namespace="{release_namespace}"}}')
    assert operator_jobs == [f"{RELEASE}-metrics"], "the ServiceMonitor's job label is the metrics Service's name"
    assert not prometheus.query(f'ktune_trials_total{{exported_namespace="{namespace}"}}'), (
        "honorLabels keeps the job's namespace label")
    single = panel_answers(prometheus, namespace, SINGLE, operator_jobs[0], start, end)
    assert sum(single["Trials by state [A]"]) == TRIALS
    assert single["Operator up [A]"] == [1]
    assert single["Best value over time [A]"][-1] == max(single["Objective by trial number [A]"])

    multi = panel_answers(prometheus, namespace, MULTI, operator_jobs[0], start, end, single_objective=False)
    offered = variable_values(prometheus, json.loads(DASHBOARD.read_text()), {"namespace": namespace, "job": MULTI})
    assert {"score", "loss"} <= set(offered["metric"]), offered["metric"]
    assert not prometheus.query(f'ktune_tuningjob_best_value{{namespace="{namespace}", tuningjob="{MULTI}"}}')
    table = prometheus.query(f'max by (trial, metric) (ktune_trial_value{{namespace="{namespace}", '
                             f'tuningjob="{MULTI}"}})')
    assert {"score", "loss"} <= {series["metric"]["metric"] for series in table}, "the table has both objectives"
    assert multi["Final metrics by trial [A]"]


def assert_variables_fill_from_the_first_running_trial(prometheus: PrometheusServer, namespace: str) -> None:
    """While the first trials run (before any finished), namespace, job and metric already offer the run."""
    dashboard = json.loads(DASHBOARD.read_text())
    scope = {"namespace": namespace, "job": SINGLE}

    def offered() -> dict[str, list[str]] | None:
        values = variable_values(prometheus, dashboard, scope)
        return values if all(values[name] for name in ("namespace", "job", "metric")) else None

    values = wait_for(offered, 60, "the namespace, job and metric variables to offer the running job")
    finished = prometheus.query(f'ktune_trials_total{{namespace="{namespace}", tuningjob="{SINGLE}"}} > 0')
    assert not finished, f"a trial finished before the variables were checked: {finished}"
    assert namespace in values["namespace"] and SINGLE in values["job"] and "score" in values["metric"], values


def scraped_all(prometheus: PrometheusServer, namespace: str) -> float | None:
    expr = f'sum(ktune_trials_total{{namespace="{namespace}"}}) == {2 * TRIALS}'
    result = prometheus.query(f"timestamp({expr})")
    return float(result[0]["value"][1]) if result else None
