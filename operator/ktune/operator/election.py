"""Lease-based leader election, so that several operator replicas never act at the same time.

kopf's peering only pauses operators and has no election; this is the usual Kubernetes scheme
(coordination.k8s.io/v1 Lease with optimistic concurrency): the leader renews the Lease, a standby
takes it over once it has not been renewed for `lease_seconds`, and a leader that cannot renew in time
exits at once so that it can never act beside a new leader.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ktune.operator.cluster import AlreadyExists, ApiError, KubeCluster

log = logging.getLogger(__name__)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def micro_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LeaseElection:
    """One candidate for the Lease `namespace/name`."""

    def __init__(self, cluster: KubeCluster, namespace: str, name: str, identity: str,
                 lease_seconds: float = 15.0) -> None:
        self.cluster = cluster
        self.path = f"{LEASES.format(ns=namespace)}/{name}"
        self.collection = LEASES.format(ns=namespace)
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds

    def try_acquire(self, now: float) -> bool:
        """Take or renew the Lease if it is free, expired or ours; False when another holder is alive."""
        try:
            lease = self.cluster.request("GET", self.path)
        except ApiError as error:
            if error.status != 404:
                raise
            return self._create(now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = parse_micro_time(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        if holder not in (None, "", self.identity) and now - renewed < duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (holder != self.identity)
        lease["spec"] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": spec.get("acquireTime") if holder == self.identity else micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }
        try:
            self.cluster.request("PUT", self.path, body=lease)  # resourceVersion makes this compare-and-swap
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True

    def _create(self, now: float) -> bool:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_seconds),
                     "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0},
        }
        try:
            self.cluster.request("POST", self.collection, body=body)
        except AlreadyExists:
            return False
        return True

    def acquire(self) -> None:
        """Block until this candidate leads."""
        log.info("waiting to lead (Lease %s, identity %s)", self.path, self.identity)
        while not self._attempt():
            time.sleep(self.lease_seconds / 3)
        log.info("leading as %s", self.identity)

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in the background; call `on_lost` once the Lease could not be renewed within its duration."""
        def renew() -> None:
            last = time.time()
            while True:
                time.sleep(self.lease_seconds / 3)
                if self._attempt():
                    last = time.time()
                elif time.time() - last >= self.lease_seconds * 2 / 3:
                    on_lost()
                    return

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def _attempt(self) -> bool:
        try:
            return self.try_acquire(time.time())
        except Exception as error:  # a network hiccup is a failed attempt, not a crash
            log.warning("lease %s: %s", self.path, error)
            return False


def exit_on_lost_lease() -> None:
    """A leader that lost its Lease stops at once: a new leader may already act."""
    log.error("lost the leader Lease; exiting so that only the new leader acts")
    logging.shutdown()
    os._exit(1)
