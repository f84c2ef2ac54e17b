"""Real third-party controllers against the test control plane: Kubeflow's training-operator, Kueue and
prometheus-operator (the last has no webhooks: it only needs its CRDs, see `start_prometheus_operator`).

Each is built from its pinned Go module by `tests/cluster/build-controllers` (pins in controllers.env) and runs
here as a local process with the admin kubeconfig, after this module installs what its Deployment's
manifests would: its own CRDs (read from the module's source in the Go module cache, not copied), a
namespace, its webhook configurations and its webhook-certificate Secret. What differs from a cluster:

- Webhooks are called by URL at the process's local port, not through a Service (the test API server has no
  kube-proxy). Both controllers manage their certificates with cert-controller's rotator, which keeps an
  existing Secret whose certificates are valid for the Service's DNS name, so the Secret is created here
  with a CA and a serving cert that also names 127.0.0.1 (`certs.make_webhook_pki`); the rotator then
  injects that CA into the webhook configurations and (Kueue) the CRDs' conversion webhooks itself.
- The kubelet would mount that Secret into the pod at the webhook server's cert directory; here the same
  files are written there before the process starts.
- RBAC: the processes act as cluster admin (the controllers' ClusterRoles are not exercised).
"""

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import yaml

from tests.cluster import certs, processes
from tests.cluster.controlplane import CLUSTER_DIR, REPO_ROOT, Cluster, ControlPlaneError, free_port

BUILD_SCRIPT = CLUSTER_DIR / "build-controllers"
STARTUP_TIMEOUT = 180.0
TRAINING_OPERATOR_NAMESPACE = "kubeflow"
KUEUE_NAMESPACE = "kueue-system"
# The Kueue integrations the tests use; their webhooks (and Kueue's own kinds') are the ones registered, so
# a stopped Kueue cannot block pods or Deployments of other tests in the same session.
KUEUE_FRAMEWORKS = ("batch/job", "kubeflow.org/pytorchjob")
KUEUE_WEBHOOK_RESOURCES = {
    "clusterqueues", "cohorts", "localqueues", "resourceflavors", "workloads", "jobs", "pytorchjobs",
}  # fmt: skip
# Kueue's Job and PyTorchJob webhooks are limited to objects with a queue name (the only ones Kueue manages
# with manageJobsWithoutQueueName off, its default), so the session's other Jobs never depend on it.
KUEUE_QUEUED_ONLY = {"jobs", "pytorchjobs"}
QUEUE_NAME_SELECTOR = {"matchExpressions": [{"key": "kueue.x-k8s.io/queue-name", "operator": "Exists"}]}


@dataclass(frozen=True)
class Controller:
    """A pinned controller: its Go module and the binary build-controllers makes of it."""

    name: str
    module: str
    binary: str

    def bin_path(self) -> Path:
        out = subprocess.run([BUILD_SCRIPT, "--bin-dir", self.name], capture_output=True, text=True, check=True)
        path = Path(out.stdout.strip()) / self.binary
        if not path.is_file():
            raise ControlPlaneError(
                f"{self.name} is not built ({path} is missing). Build it (cold: minutes, reused afterwards) with: "
                f"{BUILD_SCRIPT.relative_to(REPO_ROOT)} {self.name}"
            )
        return path

    def source_dir(self) -> Path:
        """The module's source in the Go module cache (downloaded if needed), for its manifests."""
        go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")  # where build-controllers looks
        if go is None:
            raise ControlPlaneError(f"go is not on PATH: {self.name}'s CRDs are read from its Go module's source")
        module_dir = CLUSTER_DIR / "go" / self.name
        env = {**os.environ, "GOFLAGS": "-mod=readonly"}
        for attempt in range(2):
            if attempt:
                subprocess.run([go, "mod", "download", self.module], cwd=module_dir, env=env, check=True)
            out = subprocess.run(
                [go, "list", "-m", "-json", self.module], cwd=module_dir, env=env, capture_output=True, text=True
            )
            directory = json.loads(out.stdout).get("Dir") if out.returncode == 0 else None
            if directory:
                return Path(directory)
        raise ControlPlaneError(f"{self.module} has no source in the Go module cache: {out.stderr.strip()}")


TRAINING_OPERATOR = Controller("training-operator", "github.com/kubeflow/training-operator", "training-operator.v1")
KUEUE = Controller("kueue", "sigs.k8s.io/kueue", "kueue")
PROMETHEUS_OPERATOR = Controller(
    "prometheus-operator", "github.com/prometheus-operator/prometheus-operator", "operator"
)


@dataclass
class ControllerProcess:
    """A running controller; ``stop`` also removes its webhook configurations so nothing calls a dead server."""

    name: str
    process: subprocess.Popen
    log: Path
    cleanup: Callable[[], None]

    def stop(self) -> None:
        self.cleanup()
        processes.stop(self.process)

    def failure(self, what: str) -> ControlPlaneError:
        return ControlPlaneError(f"{self.name} {what}; log {self.log} ends with:\n{processes.log_tail(self.log)}")


# libyaml where PyYAML has it: the CRDs are megabytes of YAML, minutes for the pure-Python parser on 2 busy cores.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_yaml_files(paths: Iterable[Path]) -> list[dict]:
    return [doc for path in sorted(paths) for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc]


def apply(cluster: Cluster, docs: list[dict] | None = None, files: Iterable[Path] = ()) -> None:
    """Server-side apply (the CRDs are too big for the client-side last-applied annotation)."""
    sources = [arg for path in sorted(files) for arg in ("-f", str(path))]
    if docs:
        sources += ["-f", "-"]
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=ktune-tests", *sources,
        input=yaml.dump_all(docs, Dumper=_Dumper) if docs else None, timeout=300,
    )  # fmt: skip


def url_client_config(client_config: dict, port: int) -> dict:
    """The same webhook called at the process's local port instead of through its Service."""
    path = client_config.get("service", {}).get("path", "/")
    return {"url": f"https://127.0.0.1:{port}{path}"}


def webhook_configurations(docs: list[dict], prefix: str, port: int, keep: Callable[[dict], bool]) -> list[dict]:
    out = []
    for doc in docs:
        hooks = [{**hook, "clientConfig": url_client_config(hook["clientConfig"], port)}
                 for hook in doc.get("webhooks", []) if keep(hook)]  # fmt: skip
        if hooks:
            out.append({**doc, "metadata": {"name": prefix + doc["metadata"]["name"]}, "webhooks": hooks})
    return out


def install_webhook_secret(cluster: Cluster, namespace: str, name: str, pki: certs.WebhookPki) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": pki.secret_data()})


def mount_certs(pki: certs.WebhookPki, cert_dir: Path) -> None:
    """What the kubelet's Secret volume would do: the serving cert and key in the webhook server's cert dir."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "tls.crt").write_bytes(pki.cert.read_bytes())
    (cert_dir / "tls.key").write_bytes(pki.key.read_bytes())


def ensure_namespace(cluster: Cluster, name: str) -> None:
    cluster.kubectl("create", "namespace", name, check=False)


def wait_ready(controller: ControllerProcess, readyz: str, webhook_port: int, ca: Path) -> None:
    """Wait until /readyz answers 200 and the webhook server answers TLS with the certificate made here.

    Both: Kueue first runs a bootstrap manager for its certificates that already serves the probe address but
    no webhooks, so /readyz alone can pass before anything answers the API server's webhook calls.
    """
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if controller.process.poll() is not None:
            raise controller.failure(f"exited with code {controller.process.returncode} during startup")
        try:
            with urllib.request.urlopen(readyz, timeout=5) as answer:
                ready = answer.status == 200
            # Any HTTP answer (404 for "/") over verified TLS means the webhook server is serving.
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"https://127.0.0.1:{webhook_port}/", timeout=5, context=context).close()
            if ready:
                return
        except OSError as error:
            last = str(error)
        time.sleep(1)
    raise controller.failure(
        f"not ready at {readyz} and webhook port {webhook_port} after {STARTUP_TIMEOUT:.0f} s (last: {last})"
    )


def delete_webhook_configurations(cluster: Cluster, configs: list[dict]) -> None:
    for config in configs:
        cluster.kubectl("delete", config["kind"], config["metadata"]["name"], "--ignore-not-found", check=False)


def run_controller(name: str, argv: list[str], env: dict[str, str], workdir: Path, cluster: Cluster,
                   configs: list[dict], probe_port: int, webhook_port: int, pki: certs.WebhookPki) -> ControllerProcess:
    """Start a controller (its log `<workdir>/<name>.log`; stopping it removes its webhook configurations) and wait
    until it is ready; a controller that never gets ready is stopped."""
    log = workdir / f"{name}.log"
    controller = ControllerProcess(
        name,
        processes.spawn(argv, log, env=env, cwd=workdir),
        log,
        lambda: delete_webhook_configurations(cluster, configs),
    )
    try:
        wait_ready(controller, f"http://127.0.0.1:{probe_port}/readyz", webhook_port, pki.ca_cert)
    except BaseException:
        controller.stop()
        raise
    return controller


def start_training_operator(cluster: Cluster) -> ControllerProcess:
    """Kubeflow's training-operator (all its job kinds) with its validating webhooks registered."""
    binary, source = TRAINING_OPERATOR.bin_path(), TRAINING_OPERATOR.source_dir()
    workdir = cluster.workdir / "controllers" / "training-operator"
    ensure_namespace(cluster, TRAINING_OPERATOR_NAMESPACE)
    apply(cluster, files=(source / "manifests/base/crds").glob("kubeflow.org_*.yaml"))
    pki = certs.make_webhook_pki(
        workdir / "pki", "training-operator-ca", f"training-operator.{TRAINING_OPERATOR_NAMESPACE}.svc"
    )
    install_webhook_secret(cluster, TRAINING_OPERATOR_NAMESPACE, "training-operator-webhook-cert", pki)
    # The webhook server reads $TMPDIR/k8s-webhook-server/serving-certs; the rotator only checks that a
    # file exists at the fixed /tmp/k8s-webhook-server/serving-certs (the pod's mount path) before it is ready.
    tmpdir = workdir / "tmp"
    mount_certs(pki, tmpdir / "k8s-webhook-server" / "serving-certs")
    fixed = Path("/tmp/k8s-webhook-server/serving-certs")
    if not (fixed / "tls.crt").exists():
        mount_certs(pki, fixed)
    webhook_port, probe_port = free_port(), free_port()
    # The rotator injects its CA into the configuration named validator.training-operator.kubeflow.org.
    configs = webhook_configurations(
        load_yaml_files([source / "manifests/base/webhook/manifests.yaml"]), "", webhook_port, lambda _: True
    )
    for config in configs:
        config["metadata"]["name"] = "validator.training-operator.kubeflow.org"
    apply(cluster, configs)
    argv = [
        str(binary),
        f"--metrics-bind-address=127.0.0.1:{free_port()}",
        f"--health-probe-bind-address=127.0.0.1:{probe_port}",
        f"--webhook-server-port={webhook_port}",
        "--leader-elect=false",
    ]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MY_POD_NAMESPACE": TRAINING_OPERATOR_NAMESPACE,
           "TMPDIR": str(tmpdir)}  # fmt: skip
    return run_controller("training-operator", argv, env, workdir, cluster, configs, probe_port, webhook_port, pki)


def _kueue_crds(source: Path, port: int) -> list[dict]:
    """Kueue's CRDs with the conversion webhooks its kustomization adds, called by URL."""
    crds = load_yaml_files((source / "config/components/crd/bases").glob("*.yaml"))
    patched = {
        doc["metadata"]["name"]: doc["spec"]["conversion"]
        for doc in load_yaml_files((source / "config/components/crd/patches").glob("webhook_in_*.yaml"))
    }
    for crd in crds:
        conversion = patched.get(crd["metadata"]["name"])
        if conversion is not None:
            webhook = conversion["webhook"]
            crd["spec"]["conversion"] = {
                **conversion,
                "webhook": {**webhook, "clientConfig": url_client_config(webhook["clientConfig"], port)},
            }
    return crds


def start_kueue(cluster: Cluster) -> ControllerProcess:
    """Kueue's controller manager (integrations KUEUE_FRAMEWORKS) with its webhooks and conversion registered."""
    binary, source = KUEUE.bin_path(), KUEUE.source_dir()
    workdir = cluster.workdir / "controllers" / "kueue"
    ensure_namespace(cluster, KUEUE_NAMESPACE)
    webhook_port, probe_port = free_port(), free_port()
    apply(cluster, _kueue_crds(source, webhook_port))
    pki = certs.make_webhook_pki(workdir / "pki", "kueue-ca", f"kueue-webhook-service.{KUEUE_NAMESPACE}.svc")
    install_webhook_secret(cluster, KUEUE_NAMESPACE, "kueue-webhook-server-cert", pki)
    cert_dir = workdir / "serving-certs"
    mount_certs(pki, cert_dir)
    configs = webhook_configurations(
        load_yaml_files([source / "config/components/webhook/manifests.yaml"]),
        "kueue-",
        webhook_port,
        lambda hook: any(set(rule["resources"]) & KUEUE_WEBHOOK_RESOURCES for rule in hook["rules"]),
    )
    for config_doc in configs:
        for hook in config_doc["webhooks"]:
            if any(set(rule["resources"]) & KUEUE_QUEUED_ONLY for rule in hook["rules"]):
                hook["objectSelector"] = QUEUE_NAME_SELECTOR
    apply(cluster, configs)
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{probe_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": "kueue-webhook-service",
            "webhookSecretName": "kueue-webhook-server-cert",
        },
        "integrations": {"frameworks": list(KUEUE_FRAMEWORKS)},
    }
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # The on-demand visibility API is an aggregated API server whose delegated authentication needs in-cluster
    # credentials (a pod's ServiceAccount token and the kubernetes Service); the tests do not use it.
    argv = [str(binary), f"--config={config_path}", "--feature-gates=VisibilityOnDemand=false"]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return run_controller("kueue", argv, env, workdir, cluster, configs, probe_port, webhook_port, pki)


def start_prometheus_operator(cluster: Cluster) -> ControllerProcess:
    """prometheus-operator with its CRDs (monitoring.coreos.com, from its module's example/prometheus-operator-crd).

    It renders each Prometheus object's configuration into the Secret `prometheus-<name>` (key
    prometheus.yaml.gz) as on a cluster; the Prometheus StatefulSet it also makes is left at the object's
    replicas (the tests use 0 and run Prometheus as their own process, see tests/telemetry/operator_config.py).
    """
    binary, source = PROMETHEUS_OPERATOR.bin_path(), PROMETHEUS_OPERATOR.source_dir()
    workdir = cluster.workdir / "controllers" / "prometheus-operator"
    workdir.mkdir(parents=True, exist_ok=True)
    crds = sorted((source / "example/prometheus-operator-crd").glob("monitoring.coreos.com_*.yaml"))
    apply(cluster, files=crds)
    # monitoring.coreos.com_<plural>.yaml (not parsed: its YAML has a "=" value PyYAML refuses)
    names = [f"crd/{path.stem.split('_', 1)[1]}.monitoring.coreos.com" for path in crds]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names, timeout=90)
    port = free_port()
    log = workdir / "prometheus-operator.log"
    argv = [str(binary), f"--web.listen-address=127.0.0.1:{port}", "--log-level=info"]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    controller = ControllerProcess(
        "prometheus-operator", processes.spawn(argv, log, env=env, cwd=workdir), log, lambda: None
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if controller.process.poll() is not None:
            raise controller.failure(f"exited with code {controller.process.returncode} during startup")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
            return controller
        time.sleep(1)
    controller.stop()
    raise controller.failure(f"did not answer /healthz on port {port} after {STARTUP_TIMEOUT:.0f} s")
