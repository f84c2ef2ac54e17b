"""Leader election over a Lease (on a fake clock), and which TuningJobs the operator keeps reconciling.

The timing rule under test (ktune.operator.election): a renewal has a deadline of L/3, counts from when its PUT
was sent, keeps the leader's gate open for L - L/5 after that, and a standby takes over only after seeing the
same Lease record for L by its own clock.
"""

import threading
from typing import Any

import pytest

from ktune.operator.cluster import AlreadyExists, ApiError
from ktune.operator.election import LeaseElection, NotLeading
from ktune.operator.handlers import needs_reconciling

LEASE = 15.0
WALL = 1_800_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLeases:
    """One Lease held in memory, with the API server's compare-and-swap on resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def request(self, method: str, path: str, query: Any = None, body: Any = None, content_type: str = "", *,
                timeout: float | None = None, gated: bool = True) -> dict:
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "not found")
            return {**self.lease, "metadata": {**self.lease["metadata"]}}
        if method == "POST":
            if self.lease is not None:
                raise AlreadyExists(409, "exists")
        elif body["metadata"].get("resourceVersion") != str(self.version):
            raise ApiError(409, "the object has been modified")
        self.version += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        return self.lease


class Connection:
    """One candidate's way to the Lease: it records each request's timeout, can take `delay` seconds of the fake
    clock to answer, or, `stalled`, never answers (its timeout passes, then TimeoutError), or, `down`, fails at
    once."""

    def __init__(self, leases: FakeLeases, clock: FakeClock) -> None:
        self.leases, self.clock = leases, clock
        self.timeouts: list[float] = []
        self.delay = 0.0
        self.stalled = self.down = False

    def request(self, method: str, path: str, query: Any = None, body: Any = None, content_type: str = "", *,
                timeout: float | None = None, gated: bool = True) -> dict:
        assert timeout is not None and not gated
        self.timeouts.append(timeout)
        if self.down:
            raise ConnectionRefusedError("connection refused")
        if self.stalled:
            self.clock.now += timeout
            raise TimeoutError("timed out")
        self.clock.now += self.delay
        return self.leases.request(method, path, query, body)


def candidate(connection: Connection | FakeLeases, identity: str, clock: FakeClock,
              wall: float = WALL) -> LeaseElection:
    return LeaseElection(connection, "ktune-system", "ktune-operator", identity, lease_seconds=LEASE,
                         clock=clock, wall_clock=lambda: wall + clock.now)


def test_the_first_candidate_leads_and_a_second_waits_while_the_lease_is_renewed():
    leases, clock = FakeLeases(), FakeClock()
    first, second = candidate(leases, "a", clock), candidate(leases, "b", clock)
    with pytest.raises(NotLeading):
        first.gate.check("a write")  # closed until the Lease is acquired
    first.acquire()
    for _ in range(6):  # 30 s of renewals every 5 s: the second never gets it
        clock.now += 5
        assert second.try_acquire(clock.now + 5) is None
        assert first.renew()
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == "a"
    assert first.gate.check("a write") > 0


def test_a_standby_takes_over_a_lease_unchanged_for_a_whole_lease_duration_by_its_own_clock():
    leases, clock = FakeLeases(), FakeClock()
    # The leader's wall clock is an hour behind: a standby comparing renewTime with its own clock would take over
    # at once. It goes by when it saw the record instead.
    first, second = candidate(leases, "a", clock, wall=WALL - 3600), candidate(leases, "b", clock)
    assert first.try_acquire(clock.now + 5) is not None
    assert second.try_acquire(clock.now + 5) is None  # first seen now
    clock.now += LEASE - 1
    assert second.try_acquire(clock.now + 5) is None
    clock.now += 1
    assert second.try_acquire(clock.now + 5) == clock.now
    assert leases.lease is not None
    assert (leases.lease["spec"]["holderIdentity"], leases.lease["spec"]["leaseTransitions"]) == ("b", 1)
    assert not first.renew()  # the old leader sees the new holder: its gate closes at once
    with pytest.raises(NotLeading):
        first.gate.check("DELETE pod")


def test_a_renewal_seen_by_the_standby_restarts_its_wait():
    leases, clock = FakeLeases(), FakeClock()
    first, second = candidate(leases, "a", clock), candidate(leases, "b", clock)
    first.acquire()
    assert second.try_acquire(clock.now + 5) is None
    clock.now += 10
    assert first.renew()
    clock.now += 1
    assert second.try_acquire(clock.now + 5) is None  # a new record: seen at +11
    clock.now += LEASE - 1  # +25: 15 s after the first sight, 14 after the renewal was seen
    assert second.try_acquire(clock.now + 5) is None
    clock.now += 1
    assert second.try_acquire(clock.now + 5) is not None


def test_a_renewal_whose_calls_hang_is_given_up_at_its_deadline_and_the_gate_closes_lease_minus_margin_after_the_last_sent_renewal():  # noqa: E501
    leases, clock = FakeLeases(), FakeClock()
    connection = Connection(leases, clock)
    leader = candidate(connection, "a", clock)
    connection.delay = 2.0  # each call answers 2 s after it was sent
    leader.acquire()
    sent = clock.now - 2.0  # the PUT (the second call) was sent 2 s before its answer
    assert leader.gate.until == sent + LEASE - LEASE / 5
    connection.stalled = True
    clock.now += 3
    assert leader.renew()  # given up after its deadline; the gate is still open
    assert clock.now == sent + 2 + 3 + LEASE / 3
    assert max(connection.timeouts) <= LEASE / 3
    left = leader.gate.check("PATCH trial")
    assert left == pytest.approx(sent + LEASE - LEASE / 5 - clock.now)
    assert not leader.renew()  # this attempt may only use what is left of the validity: then the gate closes
    assert clock.now == sent + LEASE - LEASE / 5
    assert connection.timeouts[-1] == pytest.approx(left)
    with pytest.raises(NotLeading, match="DELETE pod refused"):
        leader.gate.check("DELETE pod")


def test_a_leader_cut_off_from_the_api_has_stopped_writing_a_margin_before_the_standby_can_take_over():
    leases, clock = FakeLeases(), FakeClock()
    connection = Connection(leases, clock)
    leader, standby = candidate(connection, "a", clock), candidate(leases, "b", clock)
    leader.acquire()
    valid_until = leader.gate.until
    assert standby.try_acquire(clock.now + 5) is None
    connection.down = True
    step, renewing = 0.05, True
    next_renewal = next_try = clock.now + LEASE / 3
    for _ in range(int(3 * LEASE / step)):
        clock.now += step
        if renewing and clock.now >= min(next_renewal, leader.gate.until):  # as the renewal thread schedules them
            next_renewal = clock.now + LEASE / 3
            renewing = leader.renew()
            if not renewing:
                assert clock.now >= valid_until  # it gave up when the validity ran out, not before
        if clock.now >= next_try:
            next_try = clock.now + LEASE / 3
            if standby.try_acquire(clock.now + 5) is not None:
                break
    else:
        raise AssertionError("the standby never took over")
    assert not renewing
    assert clock.now >= valid_until + LEASE / 5
    with pytest.raises(NotLeading):
        leader.gate.check("POST pod")


def test_the_renewal_thread_reports_the_loss_with_the_gate_already_closed():
    leases = FakeLeases()
    lease = 0.9  # seconds of real time: the thread really sleeps
    stall = threading.Event()

    class Hanging(FakeLeases):
        def __init__(self) -> None:
            self.timeouts: list[float] = []

        def request(self, method: str, path: str, query: Any = None, body: Any = None, content_type: str = "", *,
                    timeout: float | None = None, gated: bool = True) -> dict:
            if not stall.is_set():
                return leases.request(method, path, query, body)
            assert timeout is not None
            self.timeouts.append(timeout)
            threading.Event().wait(timeout)  # the request hangs until its own timeout
            raise TimeoutError("timed out")

    hanging = Hanging()
    leader = LeaseElection(hanging, "ktune-system", "ktune-operator", "a", lease_seconds=lease)
    leader.acquire()
    lost = threading.Event()
    gate_when_lost: list[float] = []

    def on_lost() -> None:
        gate_when_lost.append(leader.gate.remaining())
        lost.set()

    leader.keep(on_lost)
    stall.set()
    assert lost.wait(30), "the renewal thread never gave up the Lease"
    assert gate_when_lost[0] <= 0
    assert hanging.timeouts and max(hanging.timeouts) <= lease / 3


def test_a_running_job_and_an_edited_finished_job_are_reconciled_but_a_settled_one_is_not():
    def job(phase: str | None, observed: int, generation: int = 2) -> dict:
        status = {"phase": phase, "observedGeneration": observed} if phase else {}
        return {"metadata": {"generation": generation}, "status": status}

    assert needs_reconciling(job(None, 0))
    assert needs_reconciling(job("Running", 2))
    assert not needs_reconciling(job("Succeeded", 2))
    assert not needs_reconciling(job("Failed", 2))
    assert needs_reconciling(job("Succeeded", 1))  # maxTrials was raised after it finished
