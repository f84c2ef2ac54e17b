"""The trial lifecycle's rules, proven once against a scripted in-process backend (both runners use them)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ktune.algorithms import load_tuningjob
from ktune.engine import JOB_STOPPED, Engine, TrialRecord, TrialState
from ktune.metrics import MetricsError, Scraped, TrialMetrics
from ktune.trials.backend import LaunchRefused, Observation, Phase
from ktune.trials.driver import MAX_METRICS_KEPT, DriverSettings, TrialDriver

JOB: dict[str, Any] = {
    "apiVersion": "ktune.dev/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "driver-test"},
    "spec": {
        "objective": {"metric": "ndcg_at_10", "direction": "maximize"},
        "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
        "sampler": {"name": "random", "seed": 1},
        "budget": {"maxTrials": 4, "parallelism": 1},
        "trial": {"template": {"spec": {"containers": [{"name": "trainer", "command": ["train"]}]}}},
    },
}


@dataclass
class Attempt:
    observation: Observation = field(default_factory=lambda: Observation(Phase.RUNNING))
    metrics: TrialMetrics | None = None  # None: scraping fails
    batches: list[Scraped | None] = field(default_factory=list)  # answered first, one per scrape (None: fails)
    cursors: list[object | None] = field(default_factory=list)  # the cursor of every scrape
    stopped: bool = False
    deleted: str | None = None  # "graceful" or "forced"
    released: bool = False


class ScriptedBackend:
    """Attempts whose phase and metrics a test sets; records every call the driver makes."""

    def __init__(self, refuse: bool = False) -> None:
        self.attempts: dict[tuple[int, int], Attempt] = {}
        self.refuse = refuse
        self.scrapes = 0

    def launch(self, record: TrialRecord, attempt: int) -> None:
        if self.refuse:
            raise LaunchRefused("PodRejected", "spec.containers[0].image: Required value")
        self.attempts[record.number, attempt] = Attempt()

    def observe(self, number: int, attempt: int) -> Observation:
        return self.attempts[number, attempt].observation

    def scrape(self, number: int, attempt: int, cursor: object | None) -> Scraped:
        self.scrapes += 1
        state = self.attempts[number, attempt]
        state.cursors.append(cursor)
        if state.batches:
            answer = state.batches.pop(0)
            if answer is None:
                raise MetricsError("connection refused")
            return answer
        if state.metrics is None:
            raise MetricsError("connection refused")
        return Scraped([state.metrics])

    def stop(self, number: int, attempt: int, grace_seconds: float | None) -> None:
        self.attempts[number, attempt].stopped = True

    def delete(self, number: int, attempt: int, *, force: bool = False) -> None:
        self.attempts[number, attempt].deleted = "forced" if force else "graceful"

    def release(self, number: int, attempt: int) -> None:
        if (number, attempt) in self.attempts:  # a refused launch left nothing behind
            self.attempts[number, attempt].released = True


class RecordedEvents:
    def __init__(self, refuse_creation: bool = False) -> None:
        self.lines: list[str] = []
        self.refuse_creation = refuse_creation

    def trial_created(self, record: TrialRecord) -> bool:
        self.lines.append(f"created {record.number}")
        return not self.refuse_creation

    def attempt_started(self, record: TrialRecord, attempt: int, how: str) -> None:
        self.lines.append(f"{how} {record.number}/{attempt}")

    def attempt_retried(self, number: int, attempt: int, reason: str, message: str) -> None:
        self.lines.append(f"retried {number}/{attempt} {reason}")

    def trial_reported(self, number: int, attempt: int, step: int) -> None:
        self.lines.append(f"reported {number} step {step}")

    def attempt_waiting(self, record: TrialRecord, attempt: int, waiting: tuple[str, str] | None) -> None:
        self.lines.append(f"waiting {record.number}/{attempt} {waiting[0] if waiting else 'admitted'}")

    def trial_finished(self, record: TrialRecord, attempt: int, last_step: int | None) -> None:
        self.lines.append(f"finished {record.number} {record.state.value} {record.reason or ''}".rstrip())


def driver_for(*, settings: DriverSettings | None = None, refuse_creation: bool = False,
               **spec_fields: Any) -> tuple[TrialDriver, RecordedEvents]:
    job = copy.deepcopy(JOB)
    job["spec"].update(spec_fields)
    events = RecordedEvents(refuse_creation)
    driver = TrialDriver(Engine(load_tuningjob(job).spec), settings or DriverSettings(scrape_interval_seconds=0.0),
                         events)
    return driver, events


def ended(backend: ScriptedBackend, number: int, attempt: int, observation: Observation) -> None:
    backend.attempts[number, attempt].observation = observation


def test_a_trainer_that_writes_no_result_is_judged_on_its_last_scraped_metrics():
    driver, _ = driver_for()
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].metrics = TrialMetrics({"ndcg_at_10": 0.61}, step=1)
    driver.advance(backend, now=1.0)
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result=None))
    driver.advance(backend, now=2.0)
    record = driver.engine.record(0)
    assert record.state is TrialState.SUCCEEDED
    assert record.values == [0.61]


def test_the_written_result_overrides_scraped_values_and_adds_metrics():
    driver, _ = driver_for()
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].metrics = TrialMetrics({"ndcg_at_10": 0.5, "eval_loss": 1.0}, step=1)
    driver.advance(backend, now=1.0)
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result='{"ndcg_at_10": 0.7, "test_ndcg_at_10": 0.6}'))
    driver.advance(backend, now=2.0)
    record = driver.engine.record(0)
    assert record.values == [0.7]
    assert record.metrics == {"ndcg_at_10": 0.7, "eval_loss": 1.0, "test_ndcg_at_10": 0.6}


def test_a_trainer_that_served_no_objective_and_wrote_none_fails_missing_objective():
    driver, _ = driver_for()
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result=""))
    driver.advance(backend, now=1.0)
    assert driver.engine.record(0).reason == "MissingObjective"


def test_a_result_that_is_not_json_fails_invalid_result_naming_its_source_without_retry():
    driver, events = driver_for(trial={**JOB["spec"]["trial"], "retries": 2})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result="ndcg=0.5", result_source="termination message"))
    driver.advance(backend, now=1.0)
    record = driver.engine.record(0)
    assert (record.state, record.reason) == (TrialState.FAILED, "InvalidResult")
    assert record.message.startswith("termination message: result is not JSON")
    assert not any(line.startswith("retried") for line in events.lines)


def test_a_failed_attempt_is_retried_under_the_same_number_until_the_retries_are_used():
    driver, events = driver_for(trial={**JOB["spec"]["trial"], "retries": 1})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.FAILED, reason="OOMKilled", message="exit code 137"))
    driver.advance(backend, now=1.0)
    assert backend.attempts[0, 1].released and (0, 2) in backend.attempts
    ended(backend, 0, 2, Observation(Phase.FAILED, reason="Error", message="exit code 1"))
    driver.advance(backend, now=2.0)
    record = driver.engine.record(0)
    assert (record.state, record.reason, record.message) == (TrialState.FAILED, "Error", "exit code 1")
    assert events.lines[:5] == ["created 0", "started 0/1", "retried 0/1 OOMKilled", "retry 0/2",
                                "finished 0 Failed Error"]


def test_a_refused_launch_fails_the_trial_at_once_without_a_retry():
    driver, events = driver_for(trial={**JOB["spec"]["trial"], "retries": 3})
    driver.advance(ScriptedBackend(refuse=True), now=0.0)
    record = driver.engine.record(0)
    assert (record.state, record.reason) == (TrialState.FAILED, "PodRejected")
    assert "retried" not in " ".join(events.lines)


def test_a_pruned_trial_holds_its_parallelism_slot_until_its_attempt_is_gone():
    driver, events = driver_for(pruner={"name": "threshold", "options": {"lower": 0.5}})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].metrics = TrialMetrics({"ndcg_at_10": 0.1}, step=1)
    driver.advance(backend, now=1.0)
    assert driver.engine.record(0).state is TrialState.PRUNED
    assert backend.attempts[0, 1].stopped
    assert driver.running == 1 and (1, 1) not in backend.attempts
    ended(backend, 0, 1, Observation(Phase.GONE))
    driver.advance(backend, now=2.0)
    assert backend.attempts[0, 1].released and (1, 1) in backend.attempts
    assert events.lines.index("finished 0 Pruned PrunedByPruner") < events.lines.index("created 1")


def test_each_step_reaches_the_pruner_once_and_a_retry_does_not_report_old_steps_again():
    driver, events = driver_for(trial={**JOB["spec"]["trial"], "retries": 1})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    for now, step in ((1.0, 1), (2.0, 1), (3.0, 2)):
        backend.attempts[0, 1].metrics = TrialMetrics({"ndcg_at_10": 0.1 * step}, step=step)
        driver.advance(backend, now=now)
    ended(backend, 0, 1, Observation(Phase.FAILED, reason="Error"))
    driver.advance(backend, now=4.0)
    for now, step in ((5.0, 1), (6.0, 2), (7.0, 3)):
        backend.attempts[0, 2].metrics = TrialMetrics({"ndcg_at_10": 0.2 * step}, step=step)
        driver.advance(backend, now=now)
    assert [line for line in events.lines if line.startswith("reported")] == [
        "reported 0 step 1", "reported 0 step 2", "reported 0 step 3"]
    assert driver.engine.record(0).intermediate == {1: 0.1, 2: 0.2, 3: 0.6000000000000001}


def test_metrics_silent_past_the_timeout_delete_the_attempt_and_fail_it_metrics_unavailable():
    settings = DriverSettings(scrape_interval_seconds=0.0, metrics_unavailable_timeout_seconds=30.0)
    driver, _ = driver_for(settings=settings)
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    driver.advance(backend, now=1.0)
    driver.advance(backend, now=30.0)
    assert driver.engine.record(0).state is TrialState.RUNNING
    driver.advance(backend, now=31.0)
    record = driver.engine.record(0)
    assert (record.state, record.reason) == (TrialState.FAILED, "MetricsUnavailable")
    assert backend.attempts[0, 1].deleted == "graceful"


def test_metrics_are_read_no_more_often_than_the_scrape_interval():
    driver, _ = driver_for(settings=DriverSettings(scrape_interval_seconds=2.0))
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].metrics = TrialMetrics({"ndcg_at_10": 0.1}, step=1)
    for tick in range(1, 11):
        driver.advance(backend, now=tick * 0.5)
    assert backend.scrapes == 3  # at 0.5, 2.5 and 4.5 s


def test_an_attempt_waiting_for_its_image_too_long_is_deleted_and_fails_with_the_waiting_reason():
    driver, _ = driver_for(settings=DriverSettings(image_pull_timeout_seconds=60.0))
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.PENDING, reason="ImagePullBackOff", message="no such image",
                                     waiting_for="image", since=0.0))
    driver.advance(backend, now=59.0)
    assert backend.attempts[0, 1].deleted is None
    driver.advance(backend, now=60.0)
    record = driver.engine.record(0)
    assert (record.reason, record.message, backend.attempts[0, 1].deleted) == (
        "ImagePullBackOff", "no such image", "graceful")


def test_an_attempt_waiting_for_its_queue_is_never_timed_out_and_its_wait_counts_no_hours():
    driver, events = driver_for(settings=DriverSettings(unschedulable_timeout_seconds=60.0,
                                                        image_pull_timeout_seconds=60.0))
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    queued = Observation(Phase.PENDING, reason="QueueAdmission", message="waits in LocalQueue gpus",
                         waiting_for="queue", since=0.0)
    ended(backend, 0, 1, queued)
    for now in (10.0, 500.0, 3600.0):
        driver.advance(backend, now=now)
    assert backend.attempts[0, 1].deleted is None and driver.engine.record(0).state is TrialState.RUNNING
    ended(backend, 0, 1, Observation(Phase.RUNNING))
    driver.advance(backend, now=3610.0)  # admitted: counted from its last look waiting (3600) on
    ended(backend, 0, 1, queued)  # preempted: suspended again, its pods gone
    driver.advance(backend, now=3620.0)
    driver.advance(backend, now=7200.0)
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result='{"ndcg_at_10": 0.5}'))
    driver.advance(backend, now=7230.0)
    record = driver.engine.record(0)
    assert record.state is TrialState.SUCCEEDED
    assert record.finished_at - record.started_at == 10.0 + 20.0 + 30.0  # before, between and after the waits
    assert [line for line in events.lines if line.startswith("waiting")] == [
        "waiting 0/1 QueueAdmission", "waiting 0/1 admitted", "waiting 0/1 QueueAdmission", "waiting 0/1 admitted"]


def test_an_admitted_attempt_waits_for_a_node_from_its_admission_not_from_its_creation():
    driver, _ = driver_for(settings=DriverSettings(unschedulable_timeout_seconds=60.0))
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.PENDING, reason="QueueAdmission", waiting_for="queue", since=0.0))
    driver.advance(backend, now=1000.0)
    no_pod = Observation(Phase.PENDING, reason="NoMetricsPod", message="no pod yet", waiting_for="node", since=0.0)
    ended(backend, 0, 1, no_pod)
    driver.advance(backend, now=1001.0)  # admitted at 1001, created at 0
    driver.advance(backend, now=1060.0)
    assert backend.attempts[0, 1].deleted is None and driver.engine.record(0).state is TrialState.RUNNING
    driver.advance(backend, now=1061.0)
    assert driver.engine.record(0).reason == "NoMetricsPod" and backend.attempts[0, 1].deleted == "graceful"


def test_an_attempt_terminating_on_a_lost_node_is_force_deleted_and_fails_node_lost():
    driver, _ = driver_for(settings=DriverSettings(lost_pod_timeout_seconds=120.0))
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.TERMINATING, message="pod driver-test-0-1 on node-a", since=10.0))
    driver.advance(backend, now=129.0)
    assert driver.engine.record(0).state is TrialState.RUNNING
    driver.advance(backend, now=130.0)
    record = driver.engine.record(0)
    assert record.reason == "NodeLost" and record.message.startswith("pod driver-test-0-1 on node-a stayed")
    assert backend.attempts[0, 1].deleted == "forced"


def test_when_the_goal_is_reached_running_trials_are_told_job_stopped_before_their_attempts_stop():
    driver, events = driver_for(objective={"metric": "ndcg_at_10", "direction": "maximize", "goal": 0.9},
                                budget={"maxTrials": 4, "parallelism": 2})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result='{"ndcg_at_10": 0.95}'))
    decision = driver.advance(backend, now=1.0)
    assert decision is not None and decision.reason == "GoalReached"
    assert driver.engine.record(1).reason == JOB_STOPPED and backend.attempts[1, 1].stopped
    assert driver.running == 1
    assert "created 2" not in events.lines


def test_an_adopted_trial_is_relaunched_as_its_next_attempt_when_asked():
    driver, events = driver_for()
    record = driver.engine.ask(now=0.0)
    driver.adopt(record, 1, relaunch="resumed")
    backend = ScriptedBackend()
    driver.advance(backend, now=1.0)
    assert (0, 2) in backend.attempts and "resumed 0/2" in events.lines


def test_a_trial_made_elsewhere_stops_launching_and_asks_the_runner_to_rebuild():
    driver, events = driver_for(refuse_creation=True, budget={"maxTrials": 4, "parallelism": 3})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    assert driver.conflict and events.lines == ["created 0"] and not backend.attempts


def test_without_launching_a_pass_starts_nothing_new_but_lets_running_trials_finish():
    driver, events = driver_for(budget={"maxTrials": 4, "parallelism": 1})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result='{"ndcg_at_10": 0.5}'))
    assert driver.advance(backend, now=1.0, launch=False) is None
    assert driver.engine.record(0).state is TrialState.SUCCEEDED and driver.running == 0
    assert "created 1" not in events.lines
    driver.advance(backend, now=2.0)
    assert "created 1" in events.lines


def test_a_trainer_inventing_a_metric_name_per_step_keeps_at_most_the_cap_with_the_objective_first():
    driver, _ = driver_for()
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    for step in range(1, 201):
        backend.attempts[0, 1].metrics = TrialMetrics({f"a{step:03d}": 1.0, "ndcg_at_10": 0.1 * (step % 5)}, step=step)
        driver.advance(backend, now=float(step))
    ended(backend, 0, 1, Observation(Phase.SUCCEEDED, result='{"zz_final": 2.0, "ndcg_at_10": 0.7}'))
    driver.advance(backend, now=300.0)
    metrics = driver.engine.record(0).metrics
    assert len(metrics) == MAX_METRICS_KEPT and metrics["ndcg_at_10"] == 0.7
