"""Standbys stay up (#16 item 3), on the real control plane: two `ktune operator --leader-election` replicas with
the chart's probe settings; the standby's liveness endpoint answers the kubelet's probes the whole time it waits
(longer than the failureThreshold x periodSeconds that would restart it), its readiness endpoint too, and it takes
over and acts when the leader is SIGKILLed, its liveness still answering through the hand-over to kopf.

The processes run locally (the test node agent has no images), so each gets its own liveness and metrics port
instead of the chart's shared container ports; path, timeout, period and threshold are the chart's.
"""

import json
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    ROOT,
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster

VALUES = yaml.safe_load((ROOT / "charts" / "ktune" / "values.yaml").read_text())
LIVENESS, READINESS = VALUES["livenessProbe"], VALUES["readinessProbe"]
PROBE_INTERVAL = 1.0  # seconds: the test probes more often than the kubelet's periodSeconds, so no gap goes unseen


class Prober:
    """Probes one URL as the kubelet's httpGet does (success: a status in 200-399 within timeoutSeconds), every
    PROBE_INTERVAL seconds, from a thread; `failures` lists the failed probes."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.results: list[tuple[float, int | str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _probe(self) -> int | str:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError as error:
            return repr(error)

    def _run(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL):
            self.results.append((time.monotonic(), self._probe()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + PROBE_INTERVAL + 1)

    def failures(self) -> list[Any]:
        return [(at, result) for at, result in self.results if not (isinstance(result, int) and 200 <= result < 400)]

    def span(self) -> float:
        return self.results[-1][0] - self.results[0][0] if self.results else 0.0


def replica(kubeconfig: Path, namespace: str, log: Path) -> tuple[OperatorProcess, int, int]:
    health_port, metrics_port = random.sample(range(20000, 60000), 2)
    args = ("--leader-election", "ktune-system", f"--metrics-port={metrics_port}",
            f"--liveness=http://127.0.0.1:{health_port}{LIVENESS['httpGet']['path']}")
    return OperatorProcess(kubeconfig, [namespace], log, args), health_port, metrics_port


def test_a_standby_answers_liveness_while_it_waits_and_takes_over_when_the_leader_is_killed(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    assert LIVENESS["httpGet"]["port"] == "health" and READINESS["httpGet"]["port"] == "metrics"
    restart_after = LIVENESS["failureThreshold"] * LIVENESS["periodSeconds"]
    leader, _, _ = replica(operator_kubeconfig, namespace, tmp_path / "leader.log")
    standby, health_port, metrics_port = replica(operator_kubeconfig, namespace, tmp_path / "standby.log")
    probers: list[Prober] = []
    try:
        leader.start()
        wait_for(lambda: "leading as" in leader.log(), 60, "the first replica to lead", leader)
        standby.start()
        wait_for(lambda: "waiting to lead" in standby.log(), 60, "the second replica to wait", standby)
        liveness = Prober(f"http://127.0.0.1:{health_port}{LIVENESS['httpGet']['path']}", LIVENESS["timeoutSeconds"])
        readiness = Prober(f"http://127.0.0.1:{metrics_port}{READINESS['httpGet']['path']}",
                           READINESS["timeoutSeconds"])
        probers = [liveness, readiness]
        wait_for(lambda: liveness.span() > restart_after + LIVENESS["periodSeconds"], restart_after + 120,
                 f"{restart_after + LIVENESS['periodSeconds']}s of probes of the waiting standby", standby)
        assert standby.process.poll() is None and "leading as" not in standby.log()
        assert get(cluster, "lease", "ktune-system", "ktune-operator")["spec"]["holderIdentity"].endswith(
            f"-{leader.process.pid}")
        assert liveness.failures() == [] and readiness.failures() == []

        leader.kill()
        apply(cluster, stand_in_job("taken-over", namespace, budget={"maxTrials": 2, "parallelism": 2}))
        finished = wait_finished(cluster, namespace, "taken-over", 120, standby)
        time.sleep(3 * PROBE_INTERVAL)  # probes of kopf's running phase too
        with urllib.request.urlopen(liveness.url, timeout=5) as response:
            phase = json.loads(response.read())["phase"]
    finally:
        for prober in probers:
            prober.stop()
        leader.stop()
        standby.stop()

    assert phase == "running"
    assert "leading as" in standby.log() and finished["status"]["phase"] == "Succeeded", finished["status"]
    assert get(cluster, "lease", "ktune-system", "ktune-operator")["spec"]["holderIdentity"].endswith(
        f"-{standby.process.pid}")
    assert liveness.failures() == [], f"the standby's liveness failed: {liveness.failures()}\n{standby.log()}"
    assert readiness.failures() == []
