"""The trial lifecycle's rules for launches a backend puts off (a used-up quota) or refuses (an admission policy)."""

from ktune.engine import TrialRecord, TrialState
from ktune.trials.backend import LaunchDeferred, LaunchRefused
from tests.trials.test_driver import JOB, ScriptedBackend, driver_for


class DeferringBackend(ScriptedBackend):
    """Puts off the first `times` launches, as a used-up quota would."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def launch(self, record: TrialRecord, attempt: int) -> None:
        if self.times:
            self.times -= 1
            raise LaunchDeferred("QuotaExceeded", "exceeded quota: pods=1")
        super().launch(record, attempt)


class PolicyRefusingBackend(ScriptedBackend):
    def launch(self, record: TrialRecord, attempt: int) -> None:
        raise LaunchRefused("PodRejected", "violates PodSecurity restricted", retryable=True)


def test_a_put_off_launch_waits_holding_its_slot_and_uses_no_retry():
    driver, events = driver_for(trial={**JOB["spec"]["trial"], "retries": 0})
    backend = DeferringBackend(times=2)
    driver.advance(backend, now=0.0)
    driver.advance(backend, now=1.0)
    assert driver.deferred == {0: ("QuotaExceeded", "exceeded quota: pods=1")}
    assert driver.running == 1 and driver.engine.record(0).state is TrialState.RUNNING
    driver.advance(backend, now=2.0)
    assert (0, 1) in backend.attempts and driver.deferred == {}
    assert events.lines == ["created 0", "started 0/1"]


def test_a_launch_a_policy_refuses_is_retried_then_fails_with_the_refusal():
    driver, events = driver_for(trial={**JOB["spec"]["trial"], "retries": 1})
    driver.advance(PolicyRefusingBackend(), now=0.0)
    record = driver.engine.record(0)
    assert (record.state, record.reason, record.message) == (
        TrialState.FAILED, "PodRejected", "violates PodSecurity restricted")
    assert events.lines[:3] == ["created 0", "retried 0/1 PodRejected", "finished 0 Failed PodRejected"]
