"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager.

The binaries are built from pinned Go modules by `tests/cluster/build-testenv` (pins in
`tests/cluster/versions.env`); everything listens on 127.0.0.1 on free ports, with certificates made for
this run. `Cluster` is what tests use: an admin kubeconfig, `kubectl(...)`, an `ApiClient`, kubeconfigs
for ServiceAccounts (bound tokens from the TokenRequest API) and node agents that run pods as processes.
"""

import atexit
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes
import yaml

from tests.cluster import certs, processes

CLUSTER_DIR = Path(__file__).resolve().parent
REPO_ROOT = CLUSTER_DIR.parents[1]
BUILD_SCRIPT = CLUSTER_DIR / "build-testenv"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "helm")
SERVICE_CIDR = "10.0.0.0/24"
STARTUP_TIMEOUT = 120.0
# How fast a node that stopped heartbeating (a killed node agent) goes NotReady and loses its pods.
NODE_MONITOR_GRACE_PERIOD = "20s"
POD_EVICTION_TOLERATION_SECONDS = "30"


class ControlPlaneError(RuntimeError):
    """The control plane could not be found or started; the message says why and what to run."""


def binary_dir() -> Path:
    """Where build-testenv puts (or already put) the binaries for the current pins."""
    out = subprocess.run([BUILD_SCRIPT, "--bin-dir"], capture_output=True, text=True, check=True)
    bin_dir = Path(out.stdout.strip())
    missing = [b for b in BINARIES if not (bin_dir / b).is_file()]
    if missing:
        raise ControlPlaneError(
            f"test control plane binaries missing in {bin_dir}: {', '.join(missing)}. "
            f"Build them (about 30 min cold on 2 cores, reused afterwards) with: {BUILD_SCRIPT.relative_to(REPO_ROOT)}"
        )
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Component:
    """One running binary of the control plane."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = processes.spawn(self.argv, self.log)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)

    def failure(self, what: str) -> ControlPlaneError:
        return ControlPlaneError(f"{self.name} {what}; log {self.log} ends with:\n{processes.log_tail(self.log)}")


def write_kubeconfig(path: Path, server: str, ca: Path | None, user: dict, name: str = "ktune-test") -> Path:
    """A kubeconfig with one cluster, one user and one current context (no ``ca``: TLS unverified)."""
    cluster = (
        {"server": server, "certificate-authority": str(ca)}
        if ca
        else {"server": server, "insecure-skip-tls-verify": True}
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class ControlPlane:
    """Starts and stops etcd, kube-apiserver and kube-controller-manager in ``workdir``."""

    workdir: Path
    bin_dir: Path
    components: dict[str, Component] = field(default_factory=dict)

    def start(self) -> "Cluster":
        pki = certs.make_pki(self.workdir / "pki")
        logs = self.workdir / "logs"
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        self.components["etcd"] = Component("etcd", self._etcd_argv(etcd_port, peer_port), logs / "etcd.log")
        self.components["kube-apiserver"] = Component(
            "kube-apiserver", self._apiserver_argv(pki, etcd_port, api_port), logs / "kube-apiserver.log"
        )
        kcm_kubeconfig = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            server,
            pki.ca_cert,
            {"client-certificate": str(pki.controller_manager.cert), "client-key": str(pki.controller_manager.key)},
        )
        self.components["kube-controller-manager"] = Component(
            "kube-controller-manager",
            self._controller_manager_argv(pki, kcm_kubeconfig),
            logs / "kube-controller-manager.log",
        )
        atexit.register(self.stop)
        self.components["etcd"].start()
        self.components["kube-apiserver"].start()
        self.wait_ready(server, pki)
        self.components["kube-controller-manager"].start()
        admin = write_kubeconfig(
            self.workdir / "admin.kubeconfig",
            server,
            pki.ca_cert,
            {"client-certificate": str(pki.admin.cert), "client-key": str(pki.admin.key)},
        )
        return Cluster(kubeconfig=admin, workdir=self.workdir, control_plane=self)

    def stop(self) -> None:
        for component in reversed(list(self.components.values())):
            component.stop()

    def restart_apiserver(self, downtime: float = 0.0) -> None:
        """Stop kube-apiserver, wait ``downtime`` seconds, start it again on the same port; wait for /readyz."""
        apiserver = self.components["kube-apiserver"]
        apiserver.stop()
        time.sleep(downtime)
        apiserver.start()
        self._wait_apiserver_ready()

    def restart_etcd(self, downtime: float = 0.0) -> None:
        """Stop etcd, wait ``downtime`` seconds, start it again on the same ports and data; wait for /readyz."""
        etcd = self.components["etcd"]
        etcd.stop()
        time.sleep(downtime)
        etcd.start()
        self._wait_apiserver_ready()

    def _wait_apiserver_ready(self) -> None:
        """Wait for /readyz of the kube-apiserver started earlier (same port and certificates)."""
        argv = self.components["kube-apiserver"].argv
        port = next(a for a in argv if a.startswith("--secure-port=")).split("=")[1]
        pki_dir = self.workdir / "pki"
        self._wait_readyz(f"https://127.0.0.1:{port}", pki_dir / "ca.crt", pki_dir / "admin.crt", pki_dir / "admin.key")

    def wait_ready(self, server: str, pki: certs.Pki) -> None:
        self._wait_readyz(server, pki.ca_cert, pki.admin.cert, pki.admin.key)

    def _wait_readyz(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            for component in self.components.values():
                if component.process is not None and component.process.poll() is not None:
                    raise component.failure(f"exited with code {component.process.returncode} during startup")
            try:
                with urllib.request.urlopen(f"{server}/readyz", context=context, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError as error:
                last = str(error)
            time.sleep(0.5)
        raise self.components["kube-apiserver"].failure(
            f"not ready at {server}/readyz after {STARTUP_TIMEOUT:.0f} s (last: {last})"
        )

    def _etcd_argv(self, client_port: int, peer_port: int) -> list[str]:
        client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        return [
            str(self.bin_dir / "etcd"),
            "--name=ktune-test",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=ktune-test={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, pki: certs.Pki, etcd_port: int, port: int) -> list[str]:
        return [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving.cert}",
            f"--tls-private-key-file={pki.serving.key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--endpoint-reconciler-type=none",
            # pods/log goes to the node agent's containerLogs at its InternalIP (its Hostname does not resolve), as
            # kubeadm's clusters prefer; no --kubelet-certificate-authority: the agent's certificate is self-signed.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--default-not-ready-toleration-seconds={POD_EVICTION_TOLERATION_SECONDS}",
            f"--default-unreachable-toleration-seconds={POD_EVICTION_TOLERATION_SECONDS}",
        ]

    def _controller_manager_argv(self, pki: certs.Pki, kubeconfig: Path) -> list[str]:
        return [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}",
            "--node-monitor-period=2s",
        ]


@dataclass
class Cluster:
    """A running cluster as tests see it (ours, or an existing one from KTUNE_TEST_KUBECONFIG)."""

    kubeconfig: Path
    workdir: Path
    control_plane: ControlPlane | None = None
    api: kubernetes.client.ApiClient = field(init=False)
    node_agents: list["NodeAgentProcess"] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def server(self) -> str:
        return self.api.configuration.host

    @property
    def helm_path(self) -> str:
        """helm from the pinned build when the binaries exist, else the one on PATH."""
        if self.control_plane is not None:
            return str(self.control_plane.bin_dir / "helm")
        found = shutil.which("helm")
        if found is None:
            return str(binary_dir() / "helm")
        return found

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run kubectl against this cluster; with ``check`` a non-zero exit raises with kubectl's stderr."""
        if shutil.which("kubectl") is None:
            raise ControlPlaneError("kubectl is not on PATH: apt-get install kubectl (v1.32-1.34 fit the v1.33 server)")
        argv = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
        return result

    def helm(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [self.helm_path, f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
        return result

    def service_account_kubeconfig(self, namespace: str, name: str, expiration_seconds: int = 3600) -> Path:
        """A kubeconfig that acts as ServiceAccount ``namespace/name`` (a bound token from TokenRequest)."""
        core = kubernetes.client.CoreV1Api(self.api)
        request = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        token = core.create_namespaced_service_account_token(name, namespace, request).status.token
        ca = self.api.configuration.ssl_ca_cert
        path = self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_kubeconfig(path, self.server, Path(ca) if ca else None, {"token": token}, name=f"sa-{name}")

    def start_node_agent(
        self,
        name: str,
        cpu: str = "8",
        memory: str = "32Gi",
        gpus: int = 0,
        pods: int = 110,
        ip_octet: int | None = None,
    ) -> "NodeAgentProcess":
        """Start a node agent subprocess and wait until its Node is Ready.

        Its pods get the addresses 127.<ip_octet>.x.y (default: 10, 11, ... in the order agents start here).
        """
        workdir = self.workdir / "nodes" / name
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "tests.cluster.node_agent",
            f"--kubeconfig={self.kubeconfig}",
            f"--node-name={name}",
            f"--workdir={workdir}",
            f"--cpu={cpu}",
            f"--memory={memory}",
            f"--gpus={gpus}",
            f"--pods={pods}",
            f"--ip-octet={10 + len(self.node_agents) if ip_octet is None else ip_octet}",
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        log_path = workdir / "agent.log"
        agent = NodeAgentProcess(name, processes.spawn(argv, log_path, env=env, cwd=REPO_ROOT), log_path, workdir)
        self.node_agents.append(agent)
        atexit.register(agent.stop)
        core = kubernetes.client.CoreV1Api(self.api)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if agent.process.poll() is not None:
                raise agent.failure(f"exited with code {agent.process.returncode} during startup")
            try:
                conditions = core.read_node(name).status.conditions or []
                if any(c.type == "Ready" and c.status == "True" for c in conditions):
                    return agent
            except kubernetes.client.ApiException as error:
                if error.status != 404:
                    raise
            time.sleep(0.5)
        raise agent.failure(f"did not make node {name} Ready within {STARTUP_TIMEOUT:.0f} s")

    def restart_apiserver(self, downtime: float = 0.0) -> None:
        """Restart kube-apiserver (only for the control plane started by the tests)."""
        if self.control_plane is None:
            raise ControlPlaneError("restart_apiserver needs the test control plane, not KTUNE_TEST_KUBECONFIG")
        self.control_plane.restart_apiserver(downtime)

    def restart_etcd(self, downtime: float = 0.0) -> None:
        """Restart etcd under the running kube-apiserver (only for the control plane started by the tests)."""
        if self.control_plane is None:
            raise ControlPlaneError("restart_etcd needs the test control plane, not KTUNE_TEST_KUBECONFIG")
        self.control_plane.restart_etcd(downtime)


@dataclass
class NodeAgentProcess:
    """A test node agent running as a subprocess (kill it to simulate losing the node)."""

    name: str
    process: subprocess.Popen
    log: Path
    workdir: Path

    def pod_dir(self, namespace: str, pod: str) -> Path:
        """Where the agent keeps one pod's files (container.log, termination-log)."""
        matches = sorted((self.workdir / "pods").glob(f"{namespace}_{pod}_*"), key=lambda p: p.stat().st_mtime)
        if not matches:
            raise FileNotFoundError(f"node {self.name} never ran pod {namespace}/{pod}")
        return matches[-1]

    def stop(self) -> None:
        """Stop the agent and the pods it runs; the Node object stays (NotReady once its lease expires)."""
        processes.stop(self.process)

    def kill(self) -> None:
        """SIGKILL the agent: its pod processes die with it and it stops heartbeating, like a lost node."""
        processes.kill(self.process)

    def failure(self, what: str) -> ControlPlaneError:
        return ControlPlaneError(
            f"node agent {self.name} {what}; log {self.log} ends with:\n{processes.log_tail(self.log)}"
        )
