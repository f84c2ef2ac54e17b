"""Two leaders at once (#13 item 7), on the real control plane: a leader whose API connections stall while a
standby takes over stops writing before the standby may act, and what it had on the wire cannot set anything back.

The leader talks to the API server through `StallingProxy` (which logs every request it passes on), the standby
directly. Both run as the operator's ServiceAccount, as two replicas of the Deployment would.
"""

import json
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    get,
    stand_in_job,
    trials_of,
    wait_finished,
    wait_for,
)
from tests.operator.stalling_proxy import StallingProxy

pytestmark = pytest.mark.cluster

LEASE = 8  # seconds: renewals every 8/3 s with a deadline as long, writes stop 8 - 8/5 s after the last one sent
TERMINAL = ("Succeeded", "Pruned", "Failed")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def through(proxy: StallingProxy, kubeconfig: Path, path: Path) -> Path:
    """`kubeconfig` with its server replaced by the proxy (same user: the operator's ServiceAccount token)."""
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"] = {"server": proxy.url}
    path.write_text(yaml.safe_dump(config))
    return path


class TrialWatch:
    """Every version of every Trial of a namespace, as a watch delivers them, in order."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.error: Exception | None = None
        self._stopping = False
        self._watch = kubernetes.watch.Watch()
        custom = kubernetes.client.CustomObjectsApi(cluster.api)
        stream = self._watch.stream(custom.list_namespaced_custom_object, "ktune.dev", "v1alpha1", namespace, "trials",
                                    timeout_seconds=900)
        self._thread = threading.Thread(target=self._follow, args=(stream,), daemon=True)
        self._thread.start()

    def _follow(self, stream: Any) -> None:
        try:
            for event in stream:
                trial = event["object"]
                self.seen.setdefault(trial["metadata"]["name"], []).append(trial.get("status") or {})
        except Exception as error:  # the test fails on it unless the watch was being stopped
            if not self._stopping:
                self.error = error

    def stop(self) -> None:
        self._stopping = True
        self._watch.stop()

    def set_back(self) -> list[str]:
        """Trials whose state left a finished state, or whose latest reported step went down."""
        found = []
        for name, statuses in self.seen.items():
            states = [status.get("state") for status in statuses]
            finished = next((i for i, state in enumerate(states) if state in TERMINAL), None)
            if finished is not None and set(states[finished:]) != {states[finished]}:
                found.append(f"{name}: {states}")
            steps = [max((item["step"] for item in status.get("intermediate") or []), default=-1)
                     for status in statuses]
            if steps != sorted(steps):
                found.append(f"{name}: steps {steps}")
        return found

    def finished_count(self) -> int:
        return sum(any(status.get("state") in TERMINAL for status in statuses) for statuses in self.seen.values())


def test_a_leader_whose_api_calls_hang_stops_writing_before_the_standby_takes_over_and_sets_nothing_back(
    cluster: Cluster, namespace: str, operator_kubeconfig: Path, tmp_path: Path
):
    proxy = StallingProxy(cluster.server, cluster.api.configuration.ssl_ca_cert)
    election = ("--leader-election", "ktune-system")
    lease = {"KTUNE_OPERATOR_LEASE_DURATION_SECONDS": str(LEASE)}
    leader = OperatorProcess(through(proxy, operator_kubeconfig, tmp_path / "proxied.kubeconfig"), [namespace],
                             tmp_path / "leader.log", election, lease)
    standby = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "standby.log", election, lease)
    watch = TrialWatch(cluster, namespace)
    try:
        leader.start()
        wait_for(lambda: "leading as" in leader.log(), 60, "the proxied operator to lead", leader)
        standby.start()
        wait_for(lambda: "waiting to lead" in standby.log(), 60, "the direct operator to wait", standby)
        apply(cluster, stand_in_job("stalled", namespace, budget={"maxTrials": 6, "parallelism": 2},
                                    args=["--steps", "10", "--step-seconds", "0.5"]))

        def reporting_under_the_leader() -> bool:
            statuses = [t.get("status") or {} for t in trials_of(cluster, namespace, "stalled").values()]
            return (any(s.get("state") == "Succeeded" for s in statuses)
                    and any(s.get("state") == "Running" and s.get("intermediate") for s in statuses))

        wait_for(reporting_under_the_leader, 90, "a finished trial and a running one reporting steps", leader)
        assert get(cluster, "lease", "ktune-system", "ktune-operator")["spec"]["holderIdentity"].endswith(
            f"-{leader.process.pid}"), "the leader lost its Lease before its connections stalled:\n" + leader.log()
        stalled_at = time.monotonic()
        proxy.stall()

        wait_for(lambda: leader.process.poll() is not None, 60, "the stalled leader to give up and exit", leader)
        wait_for(lambda: "leading as" in standby.log(), 60, "the standby to take over", standby)
        finished_before = watch.finished_count()
        wait_for(lambda: watch.finished_count() > finished_before, 90, "a trial finished under the new leader",
                 standby)
        proxy.release()  # whatever the old leader had sent now reaches the API server, late
        job = wait_finished(cluster, namespace, "stalled", 180, standby)
    finally:
        leader.stop()
        standby.stop()
        proxy.close()
        watch.stop()

    assert leader.process.returncode == 1 and "lost the leader Lease" in leader.log()
    assert job["status"]["phase"] == "Succeeded", job["status"]
    trials = trials_of(cluster, namespace, "stalled")
    assert sorted(trials) == [0, 1, 2, 3, 4, 5]
    # Every trial ran once, to the end: no pod of a running trial was deleted under it (a second attempt would show).
    assert {(t["status"]["state"], t["status"]["attempts"]) for t in trials.values()} == {("Succeeded", 1)}
    assert watch.error is None and watch.set_back() == []

    requests = proxy.requests_snapshot()
    renewals = [r for r in requests if r.method == "PUT" and "/leases/" in r.path
                and r.forwarded is not None and r.forwarded < stalled_at]
    assert renewals, "the leader's Lease renewals never went through the proxy"
    # The standby cannot take over before LEASE after the last renewal that reached the API server: nothing the old
    # leader wrote may have left it after that (its gate closed LEASE/5 earlier).
    takeover_bound = max(r.received for r in renewals) + LEASE
    writes = [r for r in requests if r.method in WRITES and "/leases/" not in r.path]
    late = [f"{r.method} {r.path} at +{r.received - takeover_bound:.2f}s"
            for r in writes if r.received >= takeover_bound]
    assert not late, f"the old leader wrote after the standby could take over: {late}"
    # Trial status writes are compare-and-swap: each names the resourceVersion it was based on.
    trial_writes = [json.loads(r.body) for r in writes if r.path.endswith("/status") and "/trials/" in r.path]
    assert trial_writes and all(body.get("metadata", {}).get("resourceVersion") for body in trial_writes)
