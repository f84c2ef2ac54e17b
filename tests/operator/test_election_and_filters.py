"""Leader election over a Lease, and which TuningJobs the operator keeps reconciling (its per-job daemon)."""

from typing import Any

from ktune.operator.cluster import AlreadyExists, ApiError
from ktune.operator.election import LeaseElection, micro_time
from ktune.operator.handlers import needs_reconciling

NOW = 1_800_000_000.0


class FakeLeases:
    """One Lease held in memory, with the API server's compare-and-swap on resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def request(self, method: str, path: str, query: Any = None, body: Any = None, content_type: str = "") -> dict:
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


def candidate(leases: FakeLeases, identity: str) -> LeaseElection:
    return LeaseElection(leases, "ktune-system", "ktune-operator", identity, lease_seconds=15)  # type: ignore[arg-type]


def test_the_first_candidate_leads_and_a_second_waits_while_the_lease_is_renewed():
    leases = FakeLeases()
    first, second = candidate(leases, "a"), candidate(leases, "b")
    assert first.try_acquire(NOW)
    assert not second.try_acquire(NOW + 1)
    assert first.try_acquire(NOW + 10)  # renewal
    assert not second.try_acquire(NOW + 20)
    assert leases.lease["spec"]["holderIdentity"] == "a"


def test_a_standby_takes_over_a_lease_that_expired():
    leases = FakeLeases()
    first, second = candidate(leases, "a"), candidate(leases, "b")
    assert first.try_acquire(NOW)
    assert second.try_acquire(NOW + 16)
    assert leases.lease["spec"]["holderIdentity"] == "b"
    assert leases.lease["spec"]["leaseTransitions"] == 1
    assert leases.lease["spec"]["acquireTime"] == micro_time(NOW + 16)
    assert not first.try_acquire(NOW + 17)


def test_a_running_job_and_an_edited_finished_job_are_reconciled_but_a_settled_one_is_not():
    def job(phase: str | None, observed: int, generation: int = 2) -> dict:
        status = {"phase": phase, "observedGeneration": observed} if phase else {}
        return {"metadata": {"generation": generation}, "status": status}

    assert needs_reconciling(job(None, 0))
    assert needs_reconciling(job("Running", 2))
    assert not needs_reconciling(job("Succeeded", 2))
    assert not needs_reconciling(job("Failed", 2))
    assert needs_reconciling(job("Succeeded", 1))  # maxTrials was raised after it finished
