"""The chart on the real control plane: rendered objects pass server-side validation, and `helm install`
brings up an operator that runs a TuningJob to Succeeded; `helm uninstall` removes it all but the CRDs.

The test node agent runs a pod's first container as a local process and has no ServiceAccount token
volume or in-cluster service address, so the installed operator cannot use in-cluster config. It gets
the same identity another way: the test creates the chart's ServiceAccount beforehand with Helm's
ownership metadata (Helm adopts it), mints a token for it, and hands the operator a kubeconfig with
that token through the chart's `extraEnv` (KUBECONFIG), which `ktune operator` falls back to. The
operator thus acts with exactly the RBAC the chart grants.
"""

import json
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ktune import __version__
from tests.chart.helm import CHART, NON_DEFAULT_VALUES, cluster_capabilities
from tests.cluster.controlplane import Cluster, NodeAgentProcess, free_port
from tests.operator.operator_harness import apply, get, stand_in_job, wait_finished, wait_for

pytestmark = pytest.mark.cluster

PROMETHEUS_OPERATOR_CRDS = Path(__file__).resolve().parent / "prometheus-operator-crds"
RELEASE = "ktune-e2e"


def rendered(cluster: Cluster, namespace: str, *values: str) -> str:
    return cluster.helm("template", RELEASE, str(CHART), "--namespace", namespace, "--include-crds", *values,
                        *cluster_capabilities()).stdout


def ensure_namespaces(cluster: Cluster, names: list[str]) -> None:
    for name in names:
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def test_default_values_render_objects_the_api_server_accepts(cluster: Cluster, namespace: str):
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered(cluster, namespace))
    assert "deployment.apps/ktune-e2e created (server dry run)" in result.stdout
    assert "clusterrole.rbac.authorization.k8s.io/ktune-e2e created (server dry run)" in result.stdout


def test_non_default_values_render_objects_the_api_server_accepts(cluster: Cluster, namespace: str):
    values = yaml.safe_load(NON_DEFAULT_VALUES.read_text())
    ensure_namespaces(cluster, [*values["watchNamespaces"], values["dashboards"]["namespace"]])
    for crd in sorted(PROMETHEUS_OPERATOR_CRDS.glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com")
    text = rendered(cluster, namespace, "-f", str(NON_DEFAULT_VALUES))
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
    for created in ("servicemonitor.monitoring.coreos.com/tuner-operator",
                    "podmonitor.monitoring.coreos.com/tuner-trials", "configmap/tuner-dashboard",
                    "role.rbac.authorization.k8s.io/tuner", "deployment.apps/tuner"):
        assert f"{created} created (server dry run)" in result.stdout, result.stdout


def operator_pod(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    pods = get(cluster, "pods", namespace, selector=f"app.kubernetes.io/instance={RELEASE}")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
    return running[0] if running else None


def adoptable_service_account(cluster: Cluster, namespace: str) -> Path:
    """The chart's ServiceAccount, made before the install in a way Helm adopts; a kubeconfig with its token."""
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {
        "name": RELEASE,
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": namespace},
    }})
    return cluster.service_account_kubeconfig(namespace, RELEASE)


def operator_log(agent: NodeAgentProcess, namespace: str) -> str:
    pods = sorted((agent.workdir / "pods").glob(f"{namespace}_{RELEASE}-*"))
    return "\n".join(f"--- {p.name}\n{(p / 'container.log').read_text()[-3000:]}"
                     for p in pods if (p / "container.log").exists())


def scrape(pod: dict[str, Any], port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def release_objects(cluster: Cluster, namespace: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={RELEASE}"
    namespaced = cluster.kubectl("get", "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings",
                                 "-n", namespace, "-l", selector, "-o", "name").stdout.split()
    cluster_wide = cluster.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector,
                                   "-o", "name").stdout.split()
    return namespaced + cluster_wide


def test_helm_install_runs_a_tuningjob_to_success_and_uninstall_leaves_only_the_crds(
    cluster: Cluster, node_agent: NodeAgentProcess, namespace: str
):
    kubeconfig = adoptable_service_account(cluster, namespace)
    metrics_port, health_port = free_port(), free_port()
    install = cluster.helm(
        "install", RELEASE, str(CHART), "--namespace", namespace,
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", f"metrics.port={metrics_port}", "--set", f"healthPort={health_port}",
        "--set", "settings.reconcileIntervalSeconds=0.5", "--set", "settings.scrapeTimeoutSeconds=1",
        "--set-json", "extraEnv=" + json.dumps([{"name": "KUBECONFIG", "value": str(kubeconfig)}]),
        timeout=120)
    assert "STATUS: deployed" in install.stdout
    assert f"these namespaces: {namespace}" in install.stdout  # NOTES.txt
    assert cluster.kubectl("get", "crd", "tuningjobs.ktune.dev", "trials.ktune.dev", "-o", "name").stdout.split() == [
        "customresourcedefinition.apiextensions.k8s.io/tuningjobs.ktune.dev",
        "customresourcedefinition.apiextensions.k8s.io/trials.ktune.dev"]

    pod = wait_for(lambda: operator_pod(cluster, namespace), 60, "the chart's operator pod to run")
    job = stand_in_job("charted", namespace, budget={"maxTrials": 3, "parallelism": 2})
    job["spec"]["trial"]["metricsPort"] = free_port()  # pod IPs repeat across test sessions; ports need not
    apply(cluster, job)
    try:
        job = wait_finished(cluster, namespace, "charted", timeout=180)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{operator_log(node_agent, namespace)}") from None
    assert job["status"]["phase"] == "Succeeded", (job["status"], operator_log(node_agent, namespace))
    assert job["status"]["trialCounts"]["succeeded"] == 3

    succeeded = ("ktune_trials_total", (("namespace", namespace), ("state", "Succeeded"), ("tuningjob", "charted")))
    samples = wait_for(lambda: (found := scrape(pod, metrics_port)).get(succeeded) == 3 and found, 30,
                       "the operator's metrics port to count 3 succeeded trials")
    assert samples[("ktune_build_info", (("version", __version__),))] == 1
    cluster.kubectl("delete", "tuningjob", "charted", "-n", namespace, "--wait=true", timeout=60)
    wait_for(lambda: not any(dict(labels).get("tuningjob") == "charted" for _, labels in scrape(pod, metrics_port)),
             30, "the deleted job's series to leave the operator's metrics")

    cluster.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", timeout=120)
    wait_for(lambda: not release_objects(cluster, namespace), 60, "the release's objects to be deleted")
    assert cluster.kubectl("get", "crd", "tuningjobs.ktune.dev", "-o", "name").stdout.strip()  # CRDs stay
