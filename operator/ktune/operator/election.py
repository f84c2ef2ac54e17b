"""Lease-based leader election, so that several operator replicas never act at the same time.

kopf's peering only pauses operators and has no election; this is the usual Kubernetes scheme
(coordination.k8s.io/v1 Lease with optimistic concurrency): the leader renews the Lease, a standby takes it over
once it has not changed for `lease_seconds`, and a leader that cannot renew in time stops writing at once (its
`LeaderGate` closes) and then exits.

The timing rule, with L = `lease_seconds` (the setting `lease_duration_seconds`, 15 s by default):

- Renew: every L/3 (5 s); one renewal (a GET and a PUT of the Lease) must end within its deadline of L/3, so a
  renewal that hangs is given up in time for another try (the API client's usual timeout is 30 s, twice L).
- Validity: a renewal counts from the moment its PUT was *sent*, on this process's monotonic clock (the API
  server wrote it later; a standby read it later still). The leader may write until
  `sent + L - M`, with the margin M = L/5 (3 s). From then on the gate refuses every write of the operator
  (`KubeCluster.request`: pods, Trials, the job's status, Events) with `NotLeading`, the pass that tried stops,
  and the renewal thread reports the loss (the process exits). A write that passes the gate gets at most the
  validity left as its request timeout.
- Take-over: a standby takes the Lease only once it has seen the same Lease record (resourceVersion) unchanged
  for L on its own monotonic clock; it never compares the holder's renewTime with its own wall clock (two
  machines' clocks differ). It read that record after the leader's PUT was sent, so it takes over at least L
  after that send: M after the old leader's gate closed.

What no client can prevent: a request already on the wire when the network stalled may still arrive after a
take-over. Trial status writes carry the resourceVersion their writer last saw (a late one is refused with 409
when the new leader wrote the Trial since), and every name the operator creates is deterministic (a late create
is refused as a duplicate).
"""

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from ktune.operator.cluster import AlreadyExists, ApiError

log = logging.getLogger(__name__)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
Clock = Callable[[], float]


class LeaseApi(Protocol):
    """The one call the election makes (`KubeCluster.request`)."""

    def request(self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None,
                content_type: str = "application/json", *, timeout: float | None = None,
                gated: bool = True) -> dict[str, Any]: ...


class NotLeading(Exception):
    """A write refused because this operator's leader Lease may have passed to another replica."""


class LeaderGate:
    """Whether this process may write: until a moment on the monotonic clock, extended by each renewal.

    Closed until the Lease is first acquired, and for good once it is lost.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._until = -math.inf
        self._lock = threading.Lock()

    @property
    def until(self) -> float:
        return self._until

    def extend(self, until: float) -> None:
        with self._lock:
            self._until = max(self._until, until)

    def close(self) -> None:
        with self._lock:
            self._until = -math.inf

    def remaining(self) -> float:
        return self._until - self._clock()

    def check(self, what: str) -> float:
        """The seconds this process may still write, or NotLeading when none are left."""
        remaining = self.remaining()
        if remaining <= 0:
            raise NotLeading(f"{what} refused: this operator's leader Lease may have passed to another replica "
                             "(it was not renewed in time); the new leader acts from now on")
        return remaining


def micro_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElection:
    """One candidate for the Lease `namespace/name`; `gate` says whether it may write now."""

    def __init__(self, cluster: LeaseApi, namespace: str, name: str, identity: str, lease_seconds: float = 15.0,
                 clock: Clock = time.monotonic, wall_clock: Clock = time.time) -> None:
        self.cluster = cluster
        self.path = f"{LEASES.format(ns=namespace)}/{name}"
        self.collection = LEASES.format(ns=namespace)
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_interval = self.renew_deadline = lease_seconds / 3
        self.margin = lease_seconds / 5
        self.clock = clock
        self.wall_clock = wall_clock  # only for the Lease's informative acquireTime and renewTime
        self.gate = LeaderGate(clock)
        self.holder: str | None = None
        """The holder the last read of the Lease showed."""
        self._observed: tuple[str, float] | None = None  # (resourceVersion, when this candidate first saw it)
        self.attempted_at = clock()
        """When the last attempt to take or renew the Lease ended (monotonic): liveness of a waiting standby."""

    def try_acquire(self, deadline: float) -> float | None:
        """Take or renew the Lease if it is free, expired or ours, within `deadline` (monotonic): the monotonic
        time its write was sent, or None when another holder is alive or the write lost a race."""
        try:
            lease = self._call("GET", self.path, deadline)
        except ApiError as error:
            if error.status != 404:
                raise
            return self._create(deadline)
        spec = lease.get("spec") or {}
        self.holder = spec.get("holderIdentity") or None
        if self.holder not in (None, self.identity) and not self._expired(lease):
            return None
        now = micro_time(self.wall_clock())
        transitions = int(spec.get("leaseTransitions") or 0) + (self.holder != self.identity)
        lease["spec"] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.lease_seconds),
            "acquireTime": spec.get("acquireTime") if self.holder == self.identity else now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        sent = self.clock()
        try:
            self._call("PUT", self.path, deadline, body=lease)  # resourceVersion makes this compare-and-swap
        except ApiError as error:
            if error.status == 409:
                return None
            raise
        self.holder = self.identity
        return sent

    def _expired(self, lease: Mapping[str, Any]) -> bool:
        """Whether this candidate has seen the same Lease record for a whole lease duration, by its own clock."""
        version = str(lease["metadata"].get("resourceVersion", ""))
        now = self.clock()
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, now)
        duration = float((lease.get("spec") or {}).get("leaseDurationSeconds") or self.lease_seconds)
        return now - self._observed[1] >= duration

    def _create(self, deadline: float) -> float | None:
        now = micro_time(self.wall_clock())
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": math.ceil(self.lease_seconds),
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
        }
        sent = self.clock()
        try:
            self._call("POST", self.collection, deadline, body=body)
        except AlreadyExists:
            return None
        self.holder = self.identity
        return sent

    def _call(self, method: str, path: str, deadline: float, body: Any = None) -> dict[str, Any]:
        """One request of the Lease, given what is left of `deadline` as its timeout (never gated: it is what
        keeps the gate open)."""
        left = deadline - self.clock()
        if left <= 0:
            raise TimeoutError(f"{method} {path}: the renewal deadline passed")
        return self.cluster.request(method, path, body=body, timeout=left, gated=False)

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block until this candidate leads; the gate is open from then on."""
        log.info("waiting to lead (Lease %s, identity %s)", self.path, self.identity)
        while True:
            started = self.clock()
            sent = self._attempt(started + self.renew_deadline)
            if sent is not None:
                break
            sleep(max(0.0, started + self.renew_interval - self.clock()))
        self.gate.extend(sent + self.lease_seconds - self.margin)
        log.info("leading as %s", self.identity)

    def renew(self) -> bool:
        """One renewal by the leader; False, with the gate closed, once the Lease may be lost: its validity
        ran out, or another holder has it."""
        sent = self._attempt(min(self.clock() + self.renew_deadline, self.gate.until))
        if sent is not None:
            self.gate.extend(sent + self.lease_seconds - self.margin)
        if self.holder not in (None, self.identity) or self.gate.remaining() <= 0:
            self.gate.close()
            return False
        return True

    def keep(self, on_lost: Callable[[], None], sleep: Callable[[float], None] = time.sleep) -> threading.Thread:
        """Renew in the background; call `on_lost` (the gate already closed) once the Lease may be lost."""
        def renew() -> None:
            next_at = self.clock() + self.renew_interval
            while True:  # an attempt starts renew_interval after the previous one started, or at once if it took longer
                sleep(max(0.0, min(next_at, self.gate.until) - self.clock()))
                next_at = self.clock() + self.renew_interval
                if not self.renew():
                    on_lost()
                    return

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def _attempt(self, deadline: float) -> float | None:
        try:
            return self.try_acquire(deadline)
        except Exception as error:  # a network hiccup or a timeout is a failed attempt, not a crash
            log.warning("lease %s: %s", self.path, error)
            return None
        finally:
            self.attempted_at = self.clock()


def exit_on_lost_lease() -> None:
    """A leader that lost its Lease exits (its gate already refuses every write): a new leader may already act."""
    log.error("lost the leader Lease; exiting so that only the new leader acts")
    logging.shutdown()
    os._exit(1)
