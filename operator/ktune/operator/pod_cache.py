"""The pods of each TuningJob as the operator's pod watch sees them, corrected by what this process just did.

A reconcile pass used to LIST its job's pods; with every job reconciled every 2 s that made the operator's
work grow with jobs x run time x pods per job. Instead kopf keeps an index of ktune's pods, fed by one watch
(handlers.py: `@kopf.index` over pods carrying the job label), and `list_pods` reads it. kopf starts no
daemon before every index holds its initial LIST (kopf/_core/reactor/processing.py waits on
`operator_indexed`), so a restarted operator's first pass sees every pod that exists.

The index lags the API by the time an event takes to arrive, and a pass may run inside that gap. The
controller "expectations" pattern closes it: a pod this process created is reported from the create's
answer until the watch shows it (never "missing", so never created again and never counted as a deleted
attempt), and a pod this process deleted is hidden until the watch shows the deletion (its
deletionTimestamp, or its disappearance), so it is never taken for a pod still running. An expectation the
watch has not met within `expectation_timeout` seconds (an event kopf merged away: a pod deleted right
after its creation, or a stalled watch) is settled by one real LIST of that job's pods.

Names are not identities: a TuningJob deleted and created again under the same name makes pods with the names
of the earlier job's, which the index may still show. A creation is met only by the pod with the created uid,
and a pod that exists already (409) is expected only when it has the same controller as the one asked for.
The index holds every pod with a job's label, whoever owns it: which are the job's is the reconciler's to say
(`ktune.operator.ownership`).
"""

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ktune import contract
from ktune.operator.cluster import AlreadyExists, Cluster
from ktune.operator.pods import controller_uid

# The shape of kopf's index: (namespace, tuningjob) -> the job's pods (a kopf.Store, iterable).
PodIndex = Mapping[tuple[str, str], Iterable[dict[str, Any]]]
EXPECTATION_TIMEOUT_SECONDS = 30.0


@dataclass
class _Created:
    pod: dict[str, Any]  # the API's answer to the create (or, after a confirming LIST, the listed pod)
    since: float


@dataclass
class _Deleted:
    force: bool  # deleted with grace 0: gone at once, so a copy with a deletionTimestamp is stale too
    seen: bool  # the index held the pod at or after the deletion, so its absence now means it is gone
    since: float


class PodCache:
    """A `Cluster` whose `list_pods` answers from the watch-fed index plus this process's expectations.

    Every other call goes to `api` (which also serves the rare confirming LIST). Passes of different jobs
    run on different threads at once: the expectations are guarded by a lock, and the index is copied
    with one `list()` of a kopf Store (a dict's values, copied without releasing the GIL).
    """

    def __init__(self, api: Cluster, expectation_timeout: float = EXPECTATION_TIMEOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.expectation_timeout = expectation_timeout
        self._clock = clock
        self._index: PodIndex = {}
        self._lock = threading.Lock()
        self._created: dict[tuple[str, str], dict[str, _Created]] = {}  # (namespace, job) -> pod name -> ...
        self._deleted: dict[tuple[str, str], dict[str, _Deleted]] = {}

    def attach(self, index: PodIndex) -> None:
        """Read pods from `index` from now on (kopf hands its index to each handler call)."""
        self._index = index

    def __getattr__(self, name: str) -> Any:
        """The rest of `Cluster` (Trials, the job's status, events) goes straight to the API."""
        return getattr(self.api, name)

    # ---- reads ----------------------------------------------------------------------------------------

    def list_pods(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]:
        """The job's pods: the index's, plus created ones it lacks, minus deleted ones it still shows."""
        key = (namespace, tuningjob)
        cached = list(self._index.get(key, ()))
        now = self._clock()
        with self._lock:
            created = self._created.get(key, {})
            deleted = self._deleted.get(key, {})
            pods: dict[str, dict[str, Any]] = {}
            for pod in cached:
                name = pod["metadata"]["name"]
                if name in created:
                    if not _same(pod, created[name].pod):
                        continue  # another pod of that name, gone or going: ours is the created one
                    del created[name]  # the watch caught up with the create
                expected = deleted.get(name)
                if expected is not None:
                    expected.seen = True
                    if expected.force or not pod["metadata"].get("deletionTimestamp"):
                        continue  # a copy from before the delete
                    del deleted[name]  # the watch shows the graceful deletion under way
                pods[name] = pod
            for name, expected in list(deleted.items()):
                if name not in pods and (expected.seen or now - expected.since > self.expectation_timeout):
                    del deleted[name]
            unconfirmed = False
            for name, expected_pod in created.items():
                pods[name] = expected_pod.pod
                unconfirmed = unconfirmed or now - expected_pod.since > self.expectation_timeout
            self._forget_empty(key)
        if unconfirmed:
            return self._confirm(namespace, tuningjob)
        return list(pods.values())

    def deleted_here(self, namespace: str, tuningjob: str, name: str) -> bool:
        """Whether this process deleted the pod and no pass has yet seen the deletion in the index: the watch
        event showing it being deleted is then the echo of a pass's own delete."""
        with self._lock:
            return name in self._deleted.get((namespace, tuningjob), {})

    def _confirm(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]:
        """One real LIST: it settles the creations the watch has not shown (present: still expected,
        from the listed copy; absent: the pod is gone) and is this pass's answer."""
        listed = self.api.list_pods(namespace, tuningjob)
        by_name = {pod["metadata"]["name"]: pod for pod in listed}
        now = self._clock()
        key = (namespace, tuningjob)
        with self._lock:
            created = self._created.get(key, {})
            for name in list(created):
                if name in by_name:
                    created[name] = _Created(by_name[name], now)
                else:
                    del created[name]
            self._forget_empty(key)
        return listed

    # ---- writes ---------------------------------------------------------------------------------------

    def create_pod(self, namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]:
        """Create the pod and expect it in the index. A pod that exists already (409) with the same controller
        is expected as listed, so that a pass between now and its arrival in the index does not take it for
        gone; one with another controller is not this creation's."""
        key = (namespace, _job_of(pod))
        name = pod["metadata"]["name"]
        try:
            created = self.api.create_pod(namespace, pod)
        except AlreadyExists:
            existing = [p for p in self.api.list_pods(*key) if p["metadata"]["name"] == name]
            if existing and controller_uid(existing[0]) == controller_uid(pod):
                self._expect_created(key, existing[0])
            raise
        self._expect_created(key, created)
        return created

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        """Delete the pod and hide the index's copy of it until the index shows the deletion."""
        self.api.delete_pod(namespace, name, grace_seconds)
        now = self._clock()
        with self._lock:
            for key, created in self._created.items():
                if key[0] == namespace and created.pop(name, None) is not None:
                    self._deleted.setdefault(key, {})[name] = _Deleted(grace_seconds == 0, False, now)
                    self._forget_empty(key)
                    return
        job = self._cached_job(namespace, name)
        if job is not None:
            with self._lock:
                self._deleted.setdefault((namespace, job), {})[name] = _Deleted(grace_seconds == 0, True, now)

    def _expect_created(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        with self._lock:
            self._created.setdefault(key, {})[pod["metadata"]["name"]] = _Created(pod, self._clock())
            self._deleted.get(key, {}).pop(pod["metadata"]["name"], None)

    def _cached_job(self, namespace: str, name: str) -> str | None:
        """The job of a pod the index holds, or None (ktune names its pods `<job>-<number>-<attempt>`)."""
        job = name.rsplit("-", 2)[0]
        pods = list(self._index.get((namespace, job), ()))
        return job if any(pod["metadata"]["name"] == name for pod in pods) else None

    def _forget_empty(self, key: tuple[str, str]) -> None:
        for expectations in (self._created, self._deleted):
            if key in expectations and not expectations[key]:
                del expectations[key]


def _same(seen: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Whether the index's pod is the expected one (by uid; a pod without one, as tests make, by name alone)."""
    uids = seen["metadata"].get("uid"), expected["metadata"].get("uid")
    return None in uids or uids[0] == uids[1]


def _job_of(pod: Mapping[str, Any]) -> str:
    return pod["metadata"]["labels"][contract.LABEL_TUNINGJOB]
