"""pytest fixtures for the real control plane (registered as a plugin by tests/conftest.py).

- `cluster` (session): etcd + kube-apiserver + kube-controller-manager built from the pins in
  tests/cluster/versions.env (run tests/cluster/build-testenv first; scripts/test does), or the cluster
  of the kubeconfig in KTUNE_TEST_KUBECONFIG. A `Cluster`: .kubeconfig, .server, .api (ApiClient),
  .kubectl(*args), .helm(*args), .service_account_kubeconfig(ns, name), .start_node_agent(name, ...),
  .restart_apiserver(), .restart_etcd().
- `node_agent` (session): one test node, "ktune-node-0" (8 cpu, 32Gi, 2 nvidia.com/gpu), that runs pods'
  first containers as local processes (see tests/cluster/node_agent.py). None on an existing cluster,
  whose own nodes run the pods.
- `training_operator` / `kueue` (session): Kubeflow's training-operator / Kueue, built from their pinned Go
  modules by tests/cluster/build-controllers, with their real CRDs and webhooks (tests/cluster/controllers.py).
  None on an existing cluster, which must run them itself.
- `prometheus_operator` (session): prometheus-operator built the same way, with its monitoring.coreos.com CRDs;
  it writes each Prometheus object's generated configuration into a Secret (tests/telemetry reads it).
  None on an existing cluster.
- `namespace` (function): a fresh namespace whose `default` ServiceAccount exists (pods can be created
  at once); deleted after the test.

Logs: <pytest basetemp>/cluster0/logs/{etcd,kube-apiserver,kube-controller-manager}.log and
<basetemp>/cluster0/nodes/<node>/agent.log, pods/<ns>_<pod>_<uid>/container.log, and
<basetemp>/cluster0/controllers/{training-operator,kueue}/*.log (`--basetemp=DIR` pins it).
"""

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.cluster.controllers import (
    ControllerProcess,
    start_kueue,
    start_prometheus_operator,
    start_training_operator,
)
from tests.cluster.controlplane import Cluster, ControlPlane, NodeAgentProcess, binary_dir

EXISTING_CLUSTER_ENV = "KTUNE_TEST_KUBECONFIG"


def _sigterm_as_interrupt() -> None:
    """Let SIGTERM stop the run like Ctrl-C does, so the fixtures' teardown stops the control plane."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    existing = os.environ.get(EXISTING_CLUSTER_ENV)
    if existing:
        yield Cluster(kubeconfig=Path(existing), workdir=workdir)
        return
    _sigterm_as_interrupt()
    control_plane = ControlPlane(workdir=workdir, bin_dir=binary_dir())
    started: list[Cluster] = []
    try:
        started.append(control_plane.start())
        yield started[0]
    finally:
        for agent in started[0].node_agents if started else []:
            agent.stop()
        control_plane.stop()


@pytest.fixture(scope="session")
def node_agent(cluster: Cluster) -> Iterator[NodeAgentProcess | None]:
    if cluster.control_plane is None:
        yield None
        return
    agent = cluster.start_node_agent("ktune-node-0", cpu="8", memory="32Gi", gpus=2)
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def training_operator(cluster: Cluster) -> Iterator[ControllerProcess | None]:
    if cluster.control_plane is None:
        yield None
        return
    controller = start_training_operator(cluster)
    yield controller
    controller.stop()


@pytest.fixture(scope="session")
def kueue(cluster: Cluster) -> Iterator[ControllerProcess | None]:
    if cluster.control_plane is None:
        yield None
        return
    controller = start_kueue(cluster)
    yield controller
    controller.stop()


@pytest.fixture(scope="session")
def prometheus_operator(cluster: Cluster) -> Iterator[ControllerProcess | None]:
    if cluster.control_plane is None:
        yield None
        return
    controller = start_prometheus_operator(cluster)
    yield controller
    controller.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(cluster.api)
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"ktune.dev/test": "true"}}})
    watch = kubernetes.watch.Watch()
    for _ in watch.stream(
        core.list_namespaced_service_account, name, field_selector="metadata.name=default", timeout_seconds=60
    ):
        watch.stop()
    yield name
    core.delete_namespace(name)
