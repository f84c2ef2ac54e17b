"""A local ktune cluster in one command: the test control plane, one node agent and the operator.

`scripts/dev-cluster` runs `python -m tests.cluster.dev_cluster` from the project's .venv. It starts, with the
same code the test suite uses, etcd + kube-apiserver + kube-controller-manager (tests/cluster/controlplane.py),
applies the CRDs and the operator's namespace, ServiceAccount and RBAC from manifests/ (the Deployment is left
out, as in the tests: the node agent has no images), starts one node agent that runs pods as local processes
(tests/cluster/node_agent.py) and runs `ktune operator` from the working tree with the operator
ServiceAccount's own token. It prints the `export KUBECONFIG=...` line and runs until Ctrl-C or SIGTERM, then
stops the operator, the node agent (and with it every pod process) and the control plane, in that order.

Trial pods run on this machine: the image is ignored and the container's `command` must exist here. The node
agent puts this Python's bin directory first on the pods' PATH, so `ktune-trainer` resolves in .venv.

The operator watches only the namespaces given with --namespace (default: `default`), so that the test suite
can run against this cluster (KTUNE_TEST_KUBECONFIG) and start its own operators in its own namespaces
without a second operator acting on their jobs.

Every start is a fresh cluster in --workdir (default .dev-cluster/ in the repository): certificates, etcd
data, logs and kubeconfigs. A lock file there refuses a second dev cluster on the same directory.
"""

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

import kubernetes

from tests.cluster import processes
from tests.cluster.controlplane import (
    REPO_ROOT,
    Cluster,
    ControlPlane,
    ControlPlaneError,
    NodeAgentProcess,
    binary_dir,
    free_port,
)
from tests.cluster.waiting import wait_until
from tests.operator.operator_harness import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, install_manifests

DEFAULT_WORKDIR = REPO_ROOT / ".dev-cluster"
LOCK_NAME = "dev-cluster.lock"
NODE_NAME = "ktune-dev-node"
# Pod addresses 127.60.x.y: apart from the 127.10.x.y, 127.11.x.y, ... of node agents that tests start on this
# cluster when they run against it.
NODE_IP_OCTET = 60
# The operator's token outlives any dev session (the tests' 1-hour tokens would expire under a running operator).
OPERATOR_TOKEN_SECONDS = 7 * 24 * 3600
OPERATOR_STARTUP_TIMEOUT = 60.0
KTUNE = Path(sys.executable).parent / "ktune"


class DevClusterError(RuntimeError):
    """The dev cluster could not start or a part of it stopped; the message says which and where its log is."""


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, which runs the cleanup.

    SIGINT too: a shell starts a background command (`scripts/dev-cluster &`) with SIGINT ignored, and Python
    then leaves it ignored.
    """

    def interrupt(signum: int, _frame: object) -> NoReturn:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def lock_workdir(workdir: Path) -> IO[str]:
    """Take the workdir's lock and empty the workdir of the previous run; the lock lasts while the file is open.

    A directory that holds files but no lock file was not made by a dev cluster and is refused, so that
    --workdir never empties somebody's directory.
    """
    lock_path = workdir / LOCK_NAME
    if workdir.exists() and any(workdir.iterdir()) and not lock_path.exists():
        raise DevClusterError(f"{workdir} is not empty and holds no {LOCK_NAME}: not a dev cluster directory")
    workdir.mkdir(parents=True, exist_ok=True)
    lock = lock_path.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DevClusterError(
            f"a dev cluster already runs in {workdir} (pid {lock_path.read_text().strip() or '?'}); "
            "stop it with Ctrl-C, or give another --workdir"
        ) from None
    for entry in workdir.iterdir():
        if entry == lock_path:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


@dataclass
class DevCluster:
    """The parts of one dev cluster; `start` brings them up in order, `stop` takes down whatever started."""

    workdir: Path
    namespaces: list[str]  # empty: the operator watches every namespace
    with_operator: bool = True
    node_cpu: str = "8"
    node_memory: str = "32Gi"
    node_gpus: int = 2
    control_plane: ControlPlane | None = None
    cluster: Cluster | None = None
    node: NodeAgentProcess | None = None
    operator: subprocess.Popen[bytes] | None = None
    operator_kubeconfig: Path | None = None
    metrics_port: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def operator_log(self) -> Path:
        return self.workdir / "logs" / "operator.log"

    def start(self) -> None:
        started = time.monotonic()
        self.control_plane = ControlPlane(workdir=self.workdir, bin_dir=binary_dir())
        self.cluster = self.control_plane.start()
        self.timings["control plane"] = time.monotonic() - started
        self.node = self.cluster.start_node_agent(
            NODE_NAME, cpu=self.node_cpu, memory=self.node_memory, gpus=self.node_gpus, ip_octet=NODE_IP_OCTET
        )
        install_manifests(self.cluster)
        self.operator_kubeconfig = self.cluster.service_account_kubeconfig(
            OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, expiration_seconds=OPERATOR_TOKEN_SECONDS
        )
        for namespace in self.namespaces:
            self._ensure_namespace(namespace)
        if self.with_operator:
            self._start_operator()
        self.timings["total"] = time.monotonic() - started

    def _ensure_namespace(self, namespace: str) -> None:
        """Create the namespace if needed and wait for its `default` ServiceAccount (pods need it)."""
        assert self.cluster is not None
        core = kubernetes.client.CoreV1Api(self.cluster.api)
        try:
            core.read_namespace(namespace)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            namespace_object = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace))
            core.create_namespace(namespace_object)
        wait_until(
            lambda: core.read_namespaced_service_account("default", namespace),
            f"ServiceAccount {namespace}/default",
            timeout=60,
        )

    def operator_argv(self) -> list[str]:
        where = [arg for namespace in self.namespaces for arg in ("--namespace", namespace)] or ["--all-namespaces"]
        return [str(KTUNE), "operator", *where]

    def _start_operator(self) -> None:
        """`ktune operator` as the operator ServiceAccount; ready once its /metrics answers."""
        assert self.operator_kubeconfig is not None
        self.metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.operator_kubeconfig), "PYTHONUNBUFFERED": "1"}
        argv = [*self.operator_argv(), f"--metrics-port={self.metrics_port}"]
        self.operator = processes.spawn(argv, self.operator_log, env=env, cwd=REPO_ROOT)
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        deadline = time.monotonic() + OPERATOR_STARTUP_TIMEOUT
        while True:
            if self.operator.poll() is not None:
                raise self._failure("the operator", self.operator_log, f"exited with code {self.operator.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self._failure("the operator", self.operator_log, f"did not serve {url} in time")
            time.sleep(0.5)

    def first_failure(self) -> DevClusterError | None:
        """Why the cluster is broken (a component, the node agent or the operator exited), or None."""
        running: list[tuple[str, subprocess.Popen[bytes] | None, Path]] = []
        if self.control_plane is not None:
            running += [(c.name, c.process, c.log) for c in self.control_plane.components.values()]
        if self.node is not None:
            running.append((f"node agent {self.node.name}", self.node.process, self.node.log))
        running.append(("the operator", self.operator, self.operator_log))
        for what, process, log in running:
            if process is not None and process.poll() is not None:
                return self._failure(what, log, f"exited with code {process.returncode}")
        return None

    @staticmethod
    def _failure(what: str, log: Path, how: str) -> DevClusterError:
        return DevClusterError(f"{what} {how}; log {log} ends with:\n{processes.log_tail(log)}")

    def stop(self) -> None:
        """Operator first (it must not act on pods going away), then the node agent with its pods, then the rest."""
        if self.operator is not None:
            processes.stop(self.operator)
        if self.node is not None:
            self.node.stop()
        if self.control_plane is not None:
            self.control_plane.stop()


def ready_message(dev: DevCluster) -> str:
    assert dev.cluster is not None
    kubeconfig = dev.cluster.kubeconfig
    version = kubernetes.client.VersionApi(dev.cluster.api).get_code().git_version
    watching = f"namespace {', '.join(dev.namespaces)}" if dev.namespaces else "every namespace"
    where = f" -n {dev.namespaces[0]}" if dev.namespaces and dev.namespaces[0] != "default" else ""
    operator = (
        f"operator watching {watching}, log {dev.operator_log}, metrics http://127.0.0.1:{dev.metrics_port}/metrics"
        if dev.with_operator
        else f"no operator; run yours with: KUBECONFIG={dev.operator_kubeconfig} {' '.join(dev.operator_argv())}"
    )
    return "\n".join([
        f"ktune dev cluster ready in {dev.timings['total']:.0f} s "
        f"(control plane {dev.timings['control plane']:.0f} s): Kubernetes {version}, node {NODE_NAME}",
        f"  {operator}",
        f"  logs: {dev.workdir / 'logs'}/, pod output: {dev.workdir / 'nodes' / NODE_NAME / 'pods'}/",
        "",
        f"export KUBECONFIG={kubeconfig}",
        "",
        f"  kubectl apply{where} -f examples/smoke.yaml && kubectl get tj,tr{where} -w",
        f"  KTUNE_TEST_KUBECONFIG={kubeconfig} .venv/bin/pytest tests/smoke/test_control_plane.py",
        "Ctrl-C (or SIGTERM) stops everything.",
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/dev-cluster",
        description="Run the test control plane, a node agent and the ktune operator from this working tree.",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="state, logs and kubeconfigs; emptied at every start (default: %(default)s)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", action="append", default=[], metavar="NAMESPACE",
                       help="namespace the operator watches, created if missing (repeat; default: default)")
    where.add_argument("-A", "--all-namespaces", action="store_true",
                       help="the operator watches every namespace (then the operator tests cannot share the cluster)")
    parser.add_argument("--no-operator", action="store_true",
                        help="start no operator; the ServiceAccount kubeconfig to run your own is printed")
    parser.add_argument("--cpu", default="8", help="the node's cpu capacity (default: %(default)s)")
    parser.add_argument("--memory", default="32Gi", help="the node's memory capacity (default: %(default)s)")
    parser.add_argument("--gpus", type=int, default=2, help="the node's nvidia.com/gpu capacity (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.all_namespaces and not args.namespace:
        args.namespace = ["default"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    dev = DevCluster(
        workdir=args.workdir.resolve(),
        namespaces=args.namespace,
        with_operator=not args.no_operator,
        node_cpu=args.cpu,
        node_memory=args.memory,
        node_gpus=args.gpus,
    )
    try:
        lock = lock_workdir(dev.workdir)
    except DevClusterError as error:
        print(f"dev-cluster: {error}", file=sys.stderr)
        return 1
    with lock:
        try:
            print(f"dev-cluster: starting in {dev.workdir}", file=sys.stderr)
            dev.start()
            print(ready_message(dev), flush=True)
            while (failure := dev.first_failure()) is None:
                time.sleep(1)
            raise failure
        except (DevClusterError, ControlPlaneError) as error:
            print(f"dev-cluster: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("dev-cluster: stopping", file=sys.stderr)
            return 0
        finally:
            if dev.control_plane is not None:
                dev.stop()
                print("dev-cluster: stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
