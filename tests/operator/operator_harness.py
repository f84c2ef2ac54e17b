"""Helpers for the operator's cluster tests: install the manifests, run `ktune operator` as a subprocess
with the operator ServiceAccount's own token, build TuningJobs around the stand-in trainer, and wait."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.cluster.controlplane import Cluster

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
STAND_IN = ROOT / "tests" / "stand_in_trainer.py"
KTUNE = Path(sys.executable).parent / "ktune"
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = "ktune-system", "ktune-operator"
T = TypeVar("T")


def install_manifests(cluster: Cluster) -> Path:
    """Apply the CRDs and the operator's namespace, ServiceAccount and RBAC; return that account's kubeconfig.

    The Deployment is left out: the test node agent has no images, so the operator runs as a local
    subprocess instead, with exactly the Deployment's identity.
    """
    cluster.kubectl("apply", "-f", str(MANIFESTS / "crds.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/tuningjobs.ktune.dev", "crd/trials.ktune.dev")
    documents = [doc for doc in yaml.safe_load_all((MANIFESTS / "operator.yaml").read_text())
                 if doc and doc["kind"] != "Deployment"]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    return cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)


class OperatorProcess:
    """`ktune operator` as a subprocess (so that a test can SIGKILL it), logging to a file."""

    def __init__(self, kubeconfig: Path, namespaces: list[str], log_path: Path, extra_args: tuple[str, ...] = (),
                 extra_env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.extra_args = extra_args
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        argv = [str(KTUNE), "operator", *[arg for ns in self.namespaces for arg in ("--namespace", ns)],
                *self.extra_args]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1",
               "KTUNE_OPERATOR_RECONCILE_INTERVAL_SECONDS": "0.5", "KTUNE_OPERATOR_SCRAPE_TIMEOUT_SECONDS": "1",
               **self.extra_env}
        with self.log_path.open("a") as log:
            log.write(f"--- starting {' '.join(argv)}\n")
            log.flush()
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                            start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def stand_in_job(name: str, namespace: str, parameters: list[dict] | None = None, args: list[str] | None = None,
                 **spec: Any) -> dict[str, Any]:
    """A TuningJob whose trials run tests/stand_in_trainer.py (score = 1 - (x - 0.3)^2, best at x = 0.3)."""
    budget = spec.pop("budget", {"maxTrials": 4, "parallelism": 2})
    # A random port: test sessions running side by side on one machine give pods the same loopback addresses.
    port = random.randint(20000, 60000)
    trial = {"retries": spec.pop("retries", 0), "metricsPort": port, "template": {"spec": {"containers": [{
        "name": "trainer",
        "image": "ktune/stand-in:test",  # ignored by the test node agent, which runs the command locally
        "command": [sys.executable, str(STAND_IN)],
        "args": args if args is not None else ["--steps", "3", "--step-seconds", "0.3"],
    }]}}}
    return {
        "apiVersion": "ktune.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": {"metric": "score", "direction": "maximize"},
            "metrics": ["loss"],
            "parameters": parameters or [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
            "sampler": {"name": "random", "seed": 1},
            "budget": budget,
            "trial": trial,
            **spec,
        },
    }


def apply(cluster: Cluster, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def get(cluster: Cluster, kind: str, namespace: str, name: str | None = None, selector: str | None = None) -> Any:
    args = ["get", kind, "-n", namespace, "-o", "json"]
    if name:
        args.insert(2, name)
    if selector:
        args += ["-l", selector]
    return json.loads(cluster.kubectl(*args).stdout)


def trials_of(cluster: Cluster, namespace: str, job: str) -> dict[int, dict[str, Any]]:
    items = get(cluster, "trials", namespace, selector=f"ktune.dev/tuningjob={job}")["items"]
    return {item["spec"]["number"]: item for item in items}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, operator: OperatorProcess | None = None) -> T:
    """Poll `probe` until it returns something truthy; on timeout fail with `what` and the operator's log."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            log = operator.log()[-6000:] if operator else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n--- operator log:\n{log}")
        time.sleep(0.5)


def wait_finished(cluster: Cluster, namespace: str, name: str, timeout: float,
                  operator: OperatorProcess | None = None) -> dict[str, Any]:
    """The job once its phase is Succeeded or Failed."""
    def finished() -> dict[str, Any] | None:
        job = get(cluster, "tuningjob", namespace, name)
        return job if (job.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    return wait_for(finished, timeout, f"TuningJob {namespace}/{name} to finish", operator)
