"""The test control plane is a real Kubernetes: schema and CEL validation, GC, RBAC, pods, helm."""

import json
import subprocess
import textwrap
from pathlib import Path

import kubernetes
import pytest
import yaml

from tests.cluster.controlplane import CLUSTER_DIR, Cluster, NodeAgentProcess
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster

GROUP = "smoke.ktune.dev"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "description": "What the widget should be.",
                                "x-kubernetes-validations": [
                                    {"rule": "self.low < self.high", "message": "low must be below high"}
                                ],
                                "properties": {
                                    "low": {"type": "integer", "description": "Smallest gear count allowed."},
                                    "high": {"type": "integer", "description": "Largest gear count allowed."},
                                    "size": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "description": "Widget size in sprockets, at least one.",
                                    },
                                },
                                "required": ["low", "high"],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, **spec: object) -> str:
    return yaml.safe_dump({"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})


@pytest.fixture(scope="module")
def widget_crd(cluster: Cluster) -> str:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(WIDGET_CRD))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=60s")
    return f"widgets.{GROUP}"


def test_api_server_reports_the_pinned_kubernetes_version(cluster: Cluster) -> None:
    version = kubernetes.client.VersionApi(cluster.api).get_code()
    if cluster.control_plane is not None:
        pins = dict(
            line.split("=", 1) for line in (CLUSTER_DIR / "versions.env").read_text().splitlines() if "=" in line
        )
        assert version.git_version == pins["KUBERNETES_VERSION"]
    assert version.major == "1"


def test_crd_applied_with_kubectl_is_served_and_explained(cluster: Cluster, widget_crd: str, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("fine", low=1, high=3, size=2))
    got = json.loads(cluster.kubectl("get", "-n", namespace, "widget", "fine", "-o", "json").stdout)
    assert got["spec"] == {"low": 1, "high": 3, "size": 2}
    explained = wait_until(
        lambda: cluster.kubectl("explain", "widgets.spec.size", check=False).stdout,
        "kubectl explain to find the published Widget schema",
    )
    assert "Widget size in sprockets, at least one." in explained


def test_object_violating_the_schema_is_rejected_with_the_servers_message(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=widget("tiny", low=1, high=2, size=0), check=False
    )
    assert result.returncode != 0
    assert "spec.size" in result.stderr
    assert "should be greater than or equal to 1" in result.stderr


def test_object_violating_a_cel_rule_is_rejected_with_the_rules_message(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=widget("upside-down", low=5, high=1), check=False
    )
    assert result.returncode != 0
    assert "low must be below high" in result.stderr


def test_owned_object_is_garbage_collected_after_its_owner_is_deleted(cluster: Cluster, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"a": "1"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "owned", "ownerReferences": [reference]}})
    core.delete_namespaced_config_map("owner", namespace)

    def owned_is_gone() -> bool:
        names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
        return "owned" not in names

    wait_until(owned_is_gone, "the garbage collector to delete the owned ConfigMap")


RESULT_SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    ip = os.environ["POD_IP"]
    with socket.socket() as s:
        s.bind((ip, 0))  # the pod's own address is usable, as a server in the pod would need
    result = {"name": os.environ["POD_NAME"], "ip": ip, "tier": os.environ["TIER"], "argv": sys.argv[1:]}
    path = os.environ.get("KTUNE_RESULT_PATH", "/dev/termination-log")
    with open(path, "w") as f:
        json.dump(result, f)
    print("done", flush=True)
    """
)


def pod_manifest(name: str, script: str, args: list[str] | None = None) -> dict:
    field = {
        "POD_NAME": "metadata.name",
        "POD_IP": "status.podIP",
        "TIER": "metadata.labels['tier']",
    }
    env = [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in field.items()]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"tier": "smoke"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11-slim",
                    "command": ["python", "-c", script],
                    "args": args or [],
                    "env": [*env, {"name": "GREETING", "value": "hello-$(TIER)"}],
                }
            ],
        },
    }


def finished_pod(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> kubernetes.client.V1Pod:
    def done() -> kubernetes.client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_until(done, f"pod {namespace}/{name} to finish", timeout=90)


def test_pod_runs_through_the_node_agent_and_succeeds_with_its_termination_message(
    cluster: Cluster, node_agent: NodeAgentProcess | None, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, pod_manifest("ok", RESULT_SCRIPT, ["--greeting=$(GREETING)", "$$(TIER)"]))
    pod = finished_pod(core, namespace, "ok")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    result = json.loads(terminated.message)
    assert result == {
        "name": "ok",
        "ip": pod.status.pod_ip,
        "tier": "smoke",
        "argv": ["--greeting=hello-smoke", "$(TIER)"],
    }
    if node_agent is not None:
        assert pod.spec.node_name == node_agent.name
        assert (node_agent.pod_dir(namespace, "ok") / "container.log").read_text() == "done\n"


def test_pod_that_exits_with_code_one_fails_with_reason_error(
    cluster: Cluster, node_agent: NodeAgentProcess | None, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    manifest = pod_manifest("broken", "import sys; print('boom', file=sys.stderr); sys.exit(1)")
    manifest["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    core.create_namespaced_pod(namespace, manifest)
    pod = finished_pod(core, namespace, "broken")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (1, "Error")
    assert "boom" in terminated.message


def test_deleted_pod_gets_sigterm_and_disappears(
    cluster: Cluster, node_agent: NodeAgentProcess | None, namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    script = textwrap.dedent(
        """
        import signal, sys, time
        def stop(signum, frame):
            print("got SIGTERM", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("waiting", flush=True)
        time.sleep(600)
        """
    )
    core.create_namespaced_pod(namespace, pod_manifest("sleeper", script))
    wait_until(lambda: core.read_namespaced_pod("sleeper", namespace).status.phase == "Running", "pod to run")
    if node_agent is not None:
        log = node_agent.pod_dir(namespace, "sleeper") / "container.log"
        wait_until(lambda: "waiting" in log.read_text(), "the pod process to install its SIGTERM handler")
    core.delete_namespaced_pod("sleeper", namespace)

    def gone() -> bool:
        return "sleeper" not in [p.metadata.name for p in core.list_namespaced_pod(namespace).items]

    wait_until(gone, "the deleted pod to disappear")
    if node_agent is not None:
        assert "got SIGTERM" in log.read_text()


def test_service_account_is_forbidden_until_a_role_binding_grants_access(cluster: Cluster, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    kubeconfig = cluster.service_account_kubeconfig(namespace, "reader")
    as_reader = ["kubectl", f"--kubeconfig={kubeconfig}", "get", "configmaps", "-n", namespace]
    denied = subprocess.run(as_reader, capture_output=True, text=True, timeout=60, check=False)
    assert denied.returncode != 0
    assert f'User "system:serviceaccount:{namespace}:reader" cannot list resource "configmaps"' in denied.stderr

    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api)
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "reader"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    allowed = wait_until(
        lambda: subprocess.run(as_reader, capture_output=True, text=True, timeout=60, check=False).returncode == 0,
        "the RoleBinding to grant the ServiceAccount access",
    )
    assert allowed


def test_helm_template_output_applies_with_server_side_dry_run(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "greeter"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: greeter\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    rendered = cluster.helm("template", "smoke", str(chart), "--namespace", namespace).stdout
    assert 'greeting: "hello"' in rendered
    applied = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered)
    assert "configmap/smoke-greeting created (server dry run)" in applied.stdout
    names = [
        c.metadata.name for c in kubernetes.client.CoreV1Api(cluster.api).list_namespaced_config_map(namespace).items
    ]
    assert "smoke-greeting" not in names


def test_namespace_deletion_completes(cluster: Cluster) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": "smoke-doomed"}})
    core.create_namespaced_config_map("smoke-doomed", {"metadata": {"name": "leftover"}})
    core.delete_namespace("smoke-doomed")

    def deleted() -> bool:
        try:
            core.read_namespace("smoke-doomed")
        except kubernetes.client.ApiException as error:
            return error.status == 404
        return False

    wait_until(deleted, "the namespace controller to finish deleting the namespace", timeout=90)
