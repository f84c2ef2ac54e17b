"""The reconcile loop's wake-ups (ktune.operator.wakeups): which events wake a job, and how the loop turns wakes
into passes. The loops run on a real asyncio event loop; nothing here waits on wall-clock thresholds except the
safety-net interval itself, which the tests set short or very long."""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ktune.operator.cluster import ApiError, TooManyRequests
from ktune.operator.pod_cache import PodCache
from ktune.operator.wakeups import (
    FIRST_POD_MILESTONE,
    FIRST_TRIAL_MILESTONE,
    MAX_BACKOFF_SECONDS,
    JobWakeups,
    Milestones,
    job_spec_unhandled,
    pod_milestone,
    retry_delay,
    run_until_stopped,
    trial_milestone,
)
from tests.operator.fake_cluster import FakeCluster

LOG = logging.getLogger(__name__)
HOUR = 3600.0


class FakeStopped:
    """kopf's `stopped` flag, settable by the test."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()

    async def wait(self, timeout: float | None = None) -> "FakeStopped":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        return self


class Loop:
    """One job's loop over a pass that records itself and signals the test after each pass."""

    def __init__(self, wakeups: JobWakeups, job: str, interval: float = HOUR,
                 work: Callable[[], Awaitable[None]] | None = None) -> None:
        self.wakeups, self.job, self.interval, self.work = wakeups, job, interval, work
        self.passes = 0
        self.passed = asyncio.Event()
        self.stopped = FakeStopped()
        self.task: asyncio.Task[None] | None = None

    async def one_pass(self) -> None:
        if self.work is not None:
            await self.work()
        self.passes += 1
        self.passed.set()

    async def start(self) -> None:
        async def run() -> None:
            with self.wakeups.registered("ns", self.job) as flag:
                await run_until_stopped(flag, self.stopped, self.one_pass, self.interval, LOG)

        self.task = asyncio.create_task(run())
        await self.reached(1)  # the first pass runs at once

    async def reached(self, passes: int) -> None:
        """Wait until this many passes ran (and then let anything else that is ready run too)."""
        while self.passes < passes:
            await asyncio.wait_for(self.passed.wait(), 10)
            self.passed.clear()
        await self.settle()

    async def settle(self) -> None:
        """Let every ready task run (a wake is served within a few event-loop cycles)."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.stopped.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


def pod(phase: str | None = None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "job-0-1", "uid": "u1"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase} if phase else {}}


def test_a_burst_of_wakes_before_a_pass_causes_one_pass():
    async def scenario() -> None:
        wakeups = JobWakeups()
        loop = Loop(wakeups, "a")
        await loop.start()
        for _ in range(10):
            wakeups.wake("ns", "a")
        await loop.reached(2)
        assert loop.passes == 2  # the first pass, then one for the whole burst
        await loop.stop()

    asyncio.run(scenario())


def test_wakes_during_a_pass_cause_exactly_one_more_pass():
    async def scenario() -> None:
        wakeups = JobWakeups()
        inside, release = asyncio.Event(), asyncio.Event()

        async def slow_second_pass() -> None:
            if loop.passes == 1:
                inside.set()
                await release.wait()

        loop = Loop(wakeups, "a", work=slow_second_pass)
        await loop.start()
        wakeups.wake("ns", "a")
        await asyncio.wait_for(inside.wait(), 10)
        for _ in range(5):
            wakeups.wake("ns", "a")  # a pod ended while the pass was reading the others
        release.set()
        await loop.reached(3)
        assert loop.passes == 3
        await loop.stop()

    asyncio.run(scenario())


def test_waking_one_job_does_not_wake_another():
    async def scenario() -> None:
        wakeups = JobWakeups()
        first, second = Loop(wakeups, "a"), Loop(wakeups, "b")
        await first.start()
        await second.start()
        wakeups.wake("ns", "a")
        await first.reached(2)
        assert (first.passes, second.passes) == (2, 1)
        await first.stop()
        await second.stop()

    asyncio.run(scenario())


def test_without_wakes_the_safety_net_interval_still_brings_passes():
    async def scenario() -> None:
        loop = Loop(JobWakeups(), "a", interval=0.01)
        await loop.start()
        await loop.reached(3)
        await loop.stop()

    asyncio.run(scenario())


def test_a_busy_job_does_not_delay_another_jobs_pass():
    async def scenario() -> None:
        wakeups = JobWakeups()
        busy = threading.Event()
        release = threading.Event()
        running = asyncio.get_running_loop()

        async def blocking_pass() -> None:  # a pass on a thread, as the operator runs them
            if busy_loop.passes == 1:
                await running.run_in_executor(None, lambda: (busy.set(), release.wait(10)))

        busy_loop, other = Loop(wakeups, "busy", work=blocking_pass), Loop(wakeups, "other")
        await busy_loop.start()
        await other.start()
        wakeups.wake("ns", "busy")
        await running.run_in_executor(None, busy.wait, 10)
        wakeups.wake("ns", "other")
        await other.reached(2)  # served while the busy job's pass still runs
        assert busy_loop.passes == 1 and other.passes == 2
        release.set()
        await busy_loop.reached(2)
        await busy_loop.stop()
        await other.stop()

    asyncio.run(scenario())


def test_a_stopped_loop_exits_at_once_and_its_job_is_no_longer_woken():
    async def scenario() -> None:
        wakeups = JobWakeups()
        loop = Loop(wakeups, "a")
        await loop.start()
        await loop.stop()  # the loop waits an hour for a wake unless stopping ends the wait
        with wakeups.registered("ns", "a") as flag:
            assert not flag.is_set()
        wakeups.wake("ns", "a")  # no loop: nothing to wake, nothing kept
        assert loop.passes == 1

    asyncio.run(scenario())


def test_a_failed_pass_is_retried_after_the_interval():
    async def scenario() -> None:
        async def fails_once() -> None:
            if not failed:
                failed.append(True)
                raise RuntimeError("the API server went away")

        failed: list[bool] = []
        loop = Loop(JobWakeups(), "a", interval=0.01, work=fails_once)
        await loop.start()  # the failed first pass does not count; its retry does
        assert failed and loop.passes == 1
        await loop.stop()

    asyncio.run(scenario())


def test_a_recreated_jobs_new_loop_is_still_woken_after_its_old_loop_leaves():
    async def scenario() -> None:
        wakeups = JobWakeups()
        with contextlib.ExitStack() as old_loop:
            old = old_loop.enter_context(wakeups.registered("ns", "a"))
            with wakeups.registered("ns", "a") as new:
                old_loop.close()  # the deleted job's loop leaves after the new job's loop started
                wakeups.wake("ns", "a")
                assert new.is_set() and not old.is_set()

    asyncio.run(scenario())


def test_a_pod_wakes_its_job_when_running_terminated_or_deleted_but_not_when_created_or_updated_in_place():
    milestones = Milestones(FIRST_POD_MILESTONE)

    def wakes(event_type: str | None, body: dict[str, Any]) -> bool:
        return milestones.changed(event_type, body["metadata"]["uid"], pod_milestone(body))

    assert not wakes("ADDED", pod())  # the pass that created it knows
    assert not wakes("MODIFIED", pod("Pending"))  # bound to a node
    assert wakes("MODIFIED", pod("Running"))
    assert not wakes("MODIFIED", pod("Running"))  # the node's further status updates
    assert wakes("MODIFIED", pod("Succeeded"))
    assert wakes("MODIFIED", pod("Succeeded", deleting=True))
    assert wakes("DELETED", pod("Succeeded", deleting=True))
    assert wakes(None, pod("Running"))  # first seen running (listed at start, or events merged by kopf)


def test_the_deletion_of_a_pod_this_process_deleted_wakes_its_job_only_when_the_pod_ends_or_is_gone():
    milestones = Milestones(FIRST_POD_MILESTONE)

    def wakes(event_type: str | None, body: dict[str, Any], deleted_here: bool) -> bool:
        return milestones.changed(event_type, body["metadata"]["uid"], pod_milestone(body, deleted_here))

    assert wakes("MODIFIED", pod("Running"), deleted_here=False)
    assert not wakes("MODIFIED", pod("Running", deleting=True), deleted_here=True)  # a pass's own delete
    assert wakes("MODIFIED", pod("Failed", deleting=True), deleted_here=True)  # its process ended
    assert wakes("DELETED", pod("Failed", deleting=True), deleted_here=False)  # gone: a slot is free


def test_the_pod_cache_tells_a_pod_this_process_deleted_until_a_pass_has_seen_it_deleting():
    cluster = FakeCluster()
    cluster.pods["job-0-1"] = {"metadata": {"name": "job-0-1", "labels": {"ktune.dev/tuningjob": "job"}},
                               "status": {"phase": "Running"}}
    index = {("ns", "job"): [cluster.pods["job-0-1"]]}
    cache = PodCache(cluster)
    cache.attach(index)
    assert not cache.deleted_here("ns", "job", "job-0-1")
    cache.delete_pod("ns", "job-0-1")
    assert cache.deleted_here("ns", "job", "job-0-1")
    index[("ns", "job")] = [{"metadata": {"name": "job-0-1", "deletionTimestamp": "2026-11-30T00:00:00Z"},
                             "status": {"phase": "Running"}}]
    cache.list_pods("ns", "job")  # a pass sees it being deleted
    assert not cache.deleted_here("ns", "job", "job-0-1")


def test_a_trial_wakes_its_job_when_edited_or_deleted_but_not_on_the_operators_own_writes():
    milestones = Milestones(FIRST_TRIAL_MILESTONE)

    def wakes(event_type: str | None, generation: int, deleting: bool = False) -> bool:
        metadata: dict[str, Any] = {"uid": "t1", "generation": generation}
        if deleting:
            metadata["deletionTimestamp"] = "2026-11-30T00:00:00Z"
        trial = {"metadata": metadata, "status": {"state": "Running"}}
        return milestones.changed(event_type, "t1", trial_milestone(trial))

    assert not wakes("ADDED", 1)  # created by a pass
    assert not wakes("MODIFIED", 1)  # a status patch of a pass
    assert wakes("MODIFIED", 2)  # someone edited its spec
    assert not wakes("MODIFIED", 2)
    assert wakes("MODIFIED", 2, deleting=True)
    assert wakes("DELETED", 2, deleting=True)


def test_a_job_wakes_when_its_spec_changed_since_the_status_the_operator_wrote():
    def job(generation: int, observed: int | None) -> dict[str, Any]:
        status = {"observedGeneration": observed} if observed is not None else {}
        return {"metadata": {"generation": generation}, "status": status}

    assert job_spec_unhandled(job(1, None))
    assert not job_spec_unhandled(job(3, 3))  # its own status write, or kopf's finalizer
    assert job_spec_unhandled(job(4, 3))  # maxTrials raised


def test_failing_passes_back_off_doubling_up_to_a_minute_and_a_429_waits_at_least_its_retry_after():
    failed = ApiError(500, "etcd is down")
    assert [retry_delay(failed, 2.0, n) for n in (1, 2, 3, 4, 5, 6, 7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert retry_delay(TooManyRequests("slow down", retry_after=45.0), 2.0, 1) == 45.0
    assert retry_delay(TooManyRequests("slow down", retry_after=1.0), 2.0, 3) == 8.0
    assert MAX_BACKOFF_SECONDS == 60.0 and retry_delay(failed, 600.0, 3) == 600.0  # never below the interval
    assert retry_delay(failed, 2.0, 10_000) == 60.0  # a job failing for days


def test_a_pass_that_keeps_failing_waits_longer_each_time_and_a_success_resets_the_wait():
    async def scenario() -> None:
        waits: list[float] = []

        class RecordingStopped(FakeStopped):
            async def wait(self, timeout: float | None = None) -> "FakeStopped":
                if timeout is not None:
                    waits.append(timeout)
                return await super().wait(0)

        outcomes = [False, False, False, True, False]

        async def flaky() -> None:
            if outcomes and not outcomes.pop(0):
                raise ApiError(503, "unavailable")

        loop = Loop(JobWakeups(), "a", interval=0.01, work=flaky)
        loop.stopped = RecordingStopped()
        await loop.start()
        loop.wakeups.wake("ns", "a")
        await loop.reached(2)
        assert waits == [0.01, 0.02, 0.04, 0.01]
        await loop.stop()

    asyncio.run(scenario())
