"""The operator's metrics, read back from real Prometheus exposition text."""

import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ktune import __version__
from ktune.engine import TrialRecord, TrialState
from ktune.operator.telemetry import Telemetry


def record(number: int, state: TrialState, score: float | None = None, x: float = 0.5,
           started: float | None = 1000.0, seconds: float = 90.0) -> TrialRecord:
    finished = started + seconds if started is not None and state != TrialState.RUNNING else None
    return TrialRecord(
        number=number, params={"x": x, "optimizer": "adamw", "layers": 2}, state=state,
        values=[score] if state == TrialState.SUCCEEDED else None, intermediate={},
        metrics={"score": score, "loss": 1 - score} if score is not None else {},
        reason=None, message=None, started_at=started, finished_at=finished)


def samples(telemetry: Telemetry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples called `name` in the exposition text, keyed by their sorted labels."""
    text = generate_latest(telemetry.registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def job_labels(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"namespace": "ml", "tuningjob": "ranker", **extra}.items()))


@pytest.fixture
def job_records() -> list[TrialRecord]:
    return [
        record(0, TrialState.SUCCEEDED, 0.5, x=0.1),
        record(1, TrialState.PRUNED),
        record(2, TrialState.FAILED),
        record(3, TrialState.RUNNING),
        record(4, TrialState.SUCCEEDED, 0.9, x=0.3),
    ]


def test_trial_counts_by_final_state_and_running_trials_are_exposed(job_records):
    telemetry = Telemetry()
    telemetry.observe_job("ml", "ranker", job_records, job_records[4], "score")
    assert samples(telemetry, "ktune_trials_total") == {
        job_labels(state="Succeeded"): 2, job_labels(state="Pruned"): 1, job_labels(state="Failed"): 1}
    assert samples(telemetry, "ktune_trials_running") == {job_labels(): 1}


def test_best_value_is_labelled_with_the_objective_metric(job_records):
    telemetry = Telemetry()
    telemetry.observe_job("ml", "ranker", job_records, job_records[4], "score")
    assert samples(telemetry, "ktune_tuningjob_best_value") == {job_labels(metric="score"): 0.9}


def test_a_job_without_a_best_trial_has_no_best_value_series():
    telemetry = Telemetry()
    telemetry.observe_job("ml", "ranker", [record(0, TrialState.RUNNING)], None, "score")
    assert samples(telemetry, "ktune_tuningjob_best_value") == {}
    assert samples(telemetry, "ktune_trials_running") == {job_labels(): 1}


def test_succeeded_trials_expose_their_final_metrics_and_numeric_params(job_records):
    telemetry = Telemetry()
    telemetry.observe_job("ml", "ranker", job_records, job_records[4], "score")
    assert samples(telemetry, "ktune_trial_value") == {
        job_labels(trial="0", metric="score"): 0.5, job_labels(trial="0", metric="loss"): 0.5,
        job_labels(trial="4", metric="score"): 0.9, job_labels(trial="4", metric="loss"): pytest.approx(0.1)}
    assert samples(telemetry, "ktune_trial_param") == {
        job_labels(trial="0", param="x"): 0.1, job_labels(trial="0", param="layers"): 2,
        job_labels(trial="4", param="x"): 0.3, job_labels(trial="4", param="layers"): 2}


def test_per_trial_series_are_capped_to_the_latest_succeeded_trials():
    telemetry = Telemetry(trial_series_cap=3)
    records = [record(n, TrialState.SUCCEEDED, n / 10) for n in range(10)]
    telemetry.observe_job("ml", "ranker", records, records[-1], "score")
    trials = {dict(labels)["trial"] for labels in samples(telemetry, "ktune_trial_value")}
    assert trials == {"7", "8", "9"}
    assert {dict(labels)["trial"] for labels in samples(telemetry, "ktune_trial_param")} == {"7", "8", "9"}


def test_objective_value_is_exposed_even_when_the_metrics_lack_it():
    telemetry = Telemetry()
    trial = record(0, TrialState.SUCCEEDED, 0.7)
    trial.metrics = {"loss": 0.3}
    telemetry.observe_job("ml", "ranker", [trial], trial, "ndcg_at_10")
    assert samples(telemetry, "ktune_trial_value")[job_labels(trial="0", metric="ndcg_at_10")] == 0.7


def test_trial_durations_fill_the_histogram_of_their_final_state():
    telemetry = Telemetry()
    records = [record(0, TrialState.SUCCEEDED, 0.5, seconds=45), record(1, TrialState.SUCCEEDED, 0.6, seconds=4000),
               record(2, TrialState.PRUNED, seconds=20), record(3, TrialState.FAILED, started=None)]
    telemetry.observe_job("ml", "ranker", records, records[1], "score")
    buckets = samples(telemetry, "ktune_trial_duration_seconds_bucket")
    assert buckets[job_labels(state="Succeeded", le="30.0")] == 0
    assert buckets[job_labels(state="Succeeded", le="60.0")] == 1
    assert buckets[job_labels(state="Succeeded", le="3600.0")] == 1
    assert buckets[job_labels(state="Succeeded", le="7200.0")] == 2
    assert buckets[job_labels(state="Pruned", le="30.0")] == 1
    assert buckets[job_labels(state="Failed", le="+Inf")] == 0
    assert samples(telemetry, "ktune_trial_duration_seconds_sum")[job_labels(state="Succeeded")] == 4045
    assert samples(telemetry, "ktune_trial_duration_seconds_count")[job_labels(state="Succeeded")] == 2


def test_a_deleted_job_loses_every_series_while_other_jobs_keep_theirs(job_records):
    telemetry = Telemetry()
    telemetry.observe_job("ml", "ranker", job_records, job_records[4], "score")
    telemetry.observe_job("search", "other", job_records, job_records[4], "score")
    telemetry.forget_job("ml", "ranker")
    text = generate_latest(telemetry.registry).decode()
    assert 'tuningjob="ranker"' not in text
    assert 'tuningjob="other"' in text


def test_a_restarted_operator_exposes_the_same_job_series_from_the_same_trials(job_records):
    before, after = Telemetry(), Telemetry()
    before.observe_job("ml", "ranker", job_records, job_records[4], "score")
    after.observe_job("ml", "ranker", [TrialRecord.from_dict(r.to_dict()) for r in job_records],
                      job_records[4], "score")
    for name in ("ktune_trials_total", "ktune_trial_value", "ktune_trial_duration_seconds_bucket"):
        assert samples(before, name) == samples(after, name)


def test_reconcile_passes_are_timed_also_when_they_raise():
    telemetry = Telemetry()
    with telemetry.time_reconcile():
        pass
    with pytest.raises(RuntimeError), telemetry.time_reconcile():
        raise RuntimeError("API down")
    assert samples(telemetry, "ktune_reconcile_duration_seconds_count") == {(): 2}


def test_api_errors_are_counted_by_operation():
    telemetry = Telemetry()
    telemetry.count_api_error("create_pod")
    telemetry.count_api_error("create_pod")
    telemetry.count_api_error("patch_status")
    assert samples(telemetry, "ktune_api_errors_total") == {
        (("operation", "create_pod"),): 2, (("operation", "patch_status"),): 1}


def test_build_info_carries_the_package_version():
    assert samples(Telemetry(), "ktune_build_info") == {(("version", __version__),): 1}


def test_metrics_are_served_over_http_on_their_own_port(job_records):
    telemetry = Telemetry()
    telemetry.observe_job("ml", "ranker", job_records, job_records[4], "score")
    port = telemetry.serve(0, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        telemetry.close()
    names = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert {"ktune_trials_total", "ktune_build_info", "process_resident_memory_bytes"} <= names


class Conflict(Exception):
    pass


class FlakyClient:
    """Stands in for the operator's API client: one method fails, one conflicts, one works."""

    timeout = 30

    def create_pod(self, name: str) -> str:
        raise ConnectionError(f"API server unreachable creating {name}")

    def create_trial(self, name: str) -> str:
        raise Conflict(name)

    def list_pods(self) -> list[str]:
        return ["pod-a"]


def test_wrapped_api_calls_count_their_errors_by_operation_but_not_ignored_ones():
    telemetry = Telemetry()
    client = telemetry.counting_api_errors(FlakyClient(), ["create_pod", "create_trial", "list_pods"],
                                           ignored=(Conflict,))
    assert samples(telemetry, "ktune_api_errors_total") == {
        (("operation", "create_pod"),): 0, (("operation", "create_trial"),): 0, (("operation", "list_pods"),): 0}
    with pytest.raises(ConnectionError):
        client.create_pod("p")
    with pytest.raises(Conflict):
        client.create_trial("t")
    assert client.list_pods() == ["pod-a"]
    assert client.timeout == 30
    assert samples(telemetry, "ktune_api_errors_total") == {
        (("operation", "create_pod"),): 1, (("operation", "create_trial"),): 0, (("operation", "list_pods"),): 0}
