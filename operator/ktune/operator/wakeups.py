"""What wakes a TuningJob's reconcile loop, and the loop itself.

Each TuningJob has one loop (a kopf daemon, handlers.py): it runs a pass, then waits until its job is woken or
`reconcile_interval_seconds` passed without a wake (the safety net, and the pace of metrics scraping), then runs
the next pass. Wakes come from kopf's watch events (handlers.py), kept to the changes a pass acts on:

- a trial pod reaching a milestone: Running, Succeeded or Failed, being deleted, gone. Not its creation nor
  the start of a deletion this process made (the pass that did it knows), nor the node's other status updates
  of a pod in the same phase;
- a Trial whose spec was edited (its generation moved) or that is being deleted or gone. Not its creation or
  its status: those are this operator's own writes, and waking on their echo would double every pass;
- the TuningJob's spec edited (its generation ahead of `status.observedGeneration`). Its deletion stops the
  loop instead (kopf's `stopped`).

A wake raises the job's flag and the loop lowers it just before a pass: a burst of events before a pass causes
one pass, and events that arrive during a pass cause exactly one more. Flags, filters and loops all live on the
operator's event loop (kopf's async handlers run there); only the passes run on threads, so a slow pass holds
one thread and never another job's loop.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from typing import Any, Protocol

from ktune.operator.cluster import TooManyRequests

MAX_BACKOFF_SECONDS = 60.0
"""The longest a job whose passes keep failing waits between two of them."""

JobKey = tuple[str, str]  # (namespace, TuningJob name)


class Stopped(Protocol):
    """kopf's `stopped` daemon flag, as the loop uses it: true once the daemon should exit; `await wait(t)`
    returns when it is set or after `t` seconds (never: when `t` is None)."""

    def __bool__(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


class JobWakeups:
    """One flag per TuningJob whose loop runs; waking a job without a running loop does nothing."""

    def __init__(self) -> None:
        self._flags: dict[JobKey, asyncio.Event] = {}

    def wake(self, namespace: str, job: str) -> None:
        """Ask the job's loop for a pass as soon as it is free."""
        flag = self._flags.get((namespace, job))
        if flag is not None:
            flag.set()

    @contextlib.contextmanager
    def registered(self, namespace: str, job: str) -> Iterator[asyncio.Event]:
        """The job's flag while its loop runs. A job deleted and created again under the same name may start its
        new loop before the old one has left: the old one's exit leaves the new one's flag in place."""
        flag = asyncio.Event()
        self._flags[(namespace, job)] = flag
        try:
            yield flag
        finally:
            if self._flags.get((namespace, job)) is flag:
                del self._flags[(namespace, job)]


class Milestones:
    """The last milestone seen of each watched object, to tell a change that matters from any other update.

    `first` is the milestone an object is taken to have had before it was first seen: one first seen there
    (a pod just created, Pending) wakes nobody. Entries go with the objects' DELETED events.
    """

    def __init__(self, first: Hashable) -> None:
        self.first = first
        self._seen: dict[str, Hashable] = {}

    def changed(self, event_type: str | None, uid: str, milestone: Hashable) -> bool:
        """Whether this event (None: seen in the initial listing) moved the object to another milestone or
        removed it."""
        if event_type == "DELETED":
            self._seen.pop(uid, None)
            return True
        previous = self._seen.get(uid, self.first)
        self._seen[uid] = milestone
        return milestone != previous


def pod_milestone(pod: Mapping[str, Any], deleted_here: bool = False) -> Hashable:
    """A trial pod's phase, and whether it is being deleted by someone else than this process (`deleted_here`)."""
    deleting = bool(pod["metadata"].get("deletionTimestamp")) and not deleted_here
    return (pod.get("status") or {}).get("phase") or "Pending", deleting


FIRST_POD_MILESTONE = ("Pending", False)


def trial_milestone(trial: Mapping[str, Any]) -> Hashable:
    """A Trial's spec generation, and whether it is being deleted."""
    return trial["metadata"].get("generation", 1), bool(trial["metadata"].get("deletionTimestamp"))


FIRST_TRIAL_MILESTONE = (1, False)


def job_spec_unhandled(job: Mapping[str, Any]) -> bool:
    """Whether the TuningJob's spec changed since the last status the operator wrote for it."""
    return job["metadata"].get("generation") != (job.get("status") or {}).get("observedGeneration")


async def run_until_stopped(
    flag: asyncio.Event,
    stopped: Stopped,
    run_pass: Callable[[], Awaitable[None]],
    interval: float,
    logger: logging.Logger | logging.LoggerAdapter,
) -> None:
    """Run `run_pass` now, then each time `flag` is raised or `interval` seconds passed without, until `stopped`.

    A pass that raises is logged and the next one waits `retry_delay` (backing off while passes keep failing,
    wakes notwithstanding), or runs at once when stopping. One pass at a time: a wake during a pass is served
    right after it.
    """
    watcher = asyncio.ensure_future(_raise_when_stopped(stopped, flag))
    failures = 0
    try:
        while not stopped:
            flag.clear()
            try:
                await run_pass()
            except Exception as error:
                failures += 1
                delay = retry_delay(error, interval, failures)
                logger.exception("reconcile pass failed (%d in a row); the next one in %.1f s", failures, delay)
                await stopped.wait(delay)
                continue
            failures = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await flag.wait()
    finally:
        watcher.cancel()


def retry_delay(error: BaseException, interval: float, failures: int) -> float:
    """Seconds before the next pass after `failures` failed passes in a row: the interval, doubled with each
    further failure up to MAX_BACKOFF_SECONDS (so one job whose passes keep failing does not load the API
    server at the pace of a healthy one), and never less than a 429's Retry-After."""
    delay = min(interval * 2.0 ** min(failures - 1, 32), max(MAX_BACKOFF_SECONDS, interval))
    if isinstance(error, TooManyRequests):
        delay = max(delay, error.retry_after)
    return delay


async def _raise_when_stopped(stopped: Stopped, flag: asyncio.Event) -> None:
    await stopped.wait()
    flag.set()


