"""A scrape that brings several steps (a Prometheus range) and the cursor the driver keeps per attempt."""

from ktune.engine import TrialState
from ktune.metrics import Scraped, TrialMetrics
from ktune.trials.backend import Observation, Phase
from tests.trials.test_driver import JOB, ScriptedBackend, driver_for, ended


def steps(*values: float, first: int = 1) -> list[TrialMetrics]:
    return [TrialMetrics({"ndcg_at_10": value}, step=first + i) for i, value in enumerate(values)]


def test_every_step_of_one_scrape_reaches_the_pruner_once_oldest_first():
    driver, events = driver_for()
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].batches = [Scraped(steps(0.1, 0.2, 0.3), cursor="t3"),
                                      Scraped(steps(0.3, 0.4, first=3), cursor="t4")]  # step 3 seen again
    driver.advance(backend, now=1.0)
    driver.advance(backend, now=2.0)
    assert [line for line in events.lines if line.startswith("reported")] == [
        "reported 0 step 1", "reported 0 step 2", "reported 0 step 3", "reported 0 step 4"]
    assert driver.engine.record(0).intermediate == {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}


def test_a_step_pruned_inside_a_scrape_stops_the_attempt_and_the_later_steps_are_not_reported():
    driver, events = driver_for(pruner={"name": "threshold", "options": {"lower": 0.5}})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].batches = [Scraped(steps(0.9, 0.1, 0.95, 0.97))]
    driver.advance(backend, now=1.0)
    record = driver.engine.record(0)
    assert (record.state, record.intermediate) == (TrialState.PRUNED, {1: 0.9, 2: 0.1})
    assert backend.attempts[0, 1].stopped
    assert [line for line in events.lines if line.startswith("reported")] == ["reported 0 step 1"]


def test_the_cursor_goes_back_to_the_same_attempt_survives_a_failed_scrape_and_restarts_with_a_retry():
    driver, _ = driver_for(trial={**JOB["spec"]["trial"], "retries": 1})
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].batches = [Scraped(steps(0.1), cursor=10.0), None, Scraped([], cursor=20.0)]
    for now in (1.0, 2.0, 3.0, 4.0):
        driver.advance(backend, now=now)
    assert backend.attempts[0, 1].cursors == [None, 10.0, 10.0, 20.0]  # a failed read loses nothing
    ended(backend, 0, 1, Observation(Phase.FAILED, reason="Error"))
    driver.advance(backend, now=5.0)
    backend.attempts[0, 2].metrics = TrialMetrics({"ndcg_at_10": 0.5}, step=2)
    driver.advance(backend, now=6.0)
    driver.advance(backend, now=7.0)
    assert backend.attempts[0, 2].cursors == [None, None]
    assert driver.engine.record(0).intermediate == {1: 0.1, 2: 0.5}


def test_a_scrape_with_nothing_new_is_not_silence():
    driver, _ = driver_for()
    backend = ScriptedBackend()
    driver.advance(backend, now=0.0)
    backend.attempts[0, 1].batches = [Scraped([], cursor=1.0)] * 3
    driver.advance(backend, now=1.0)
    driver.advance(backend, now=700.0)
    driver.advance(backend, now=1400.0)
    assert driver.engine.record(0).state is TrialState.RUNNING
