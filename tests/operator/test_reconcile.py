"""One reconcile pass at a time against an in-process fake API: launching, results, retries, restarts."""

import json
from typing import Any

import pytest

from ktune import metrics
from ktune.operator.cluster import ApiError
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from ktune.operator.status_writer import ACCEPTED_SPEC_FIELD
from tests.operator.fake_cluster import FakeCluster

NOW = 1_800_000_000.0


def job_body(max_trials: int = 3, parallelism: int = 2, retries: int = 0, **spec: Any) -> dict:
    return {
        "apiVersion": "ktune.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "job", "namespace": "ns", "uid": "job-uid", "generation": 1, "annotations": {}},
        "spec": {
            "objective": {"metric": "score", "direction": "maximize"},
            "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
            "sampler": {"name": "random", "seed": 3},
            "budget": {"maxTrials": max_trials, "parallelism": parallelism},
            "trial": {"retries": retries, "template": {"spec": {"containers": [{"name": "t", "command": ["train"]}]}}},
            **spec,
        },
    }


class Harness:
    """A job body kept as the API server would show it, reconciled by one JobReconciler."""

    def __init__(self, body: dict, scrape: Any = None) -> None:
        self.cluster = FakeCluster()
        self.body = body
        self.scrape = scrape or (lambda url, timeout: metrics.TrialMetrics())
        self.reconciler = self.fresh_reconciler()

    def fresh_reconciler(self) -> JobReconciler:
        return JobReconciler(self.cluster, OperatorSettings(), scrape=self.scrape)

    def tick(self, now: float = NOW) -> dict:
        self.reconciler.reconcile(self.body, now)
        self.body["status"] = json.loads(json.dumps(self.cluster.job_status))
        return self.body["status"]

    def trial_states(self) -> dict[str, str]:
        return {name: trial.get("status", {}).get("state") for name, trial in sorted(self.cluster.trials.items())}


def test_first_pass_starts_parallelism_trials_each_with_its_pod():
    harness = Harness(job_body(max_trials=3, parallelism=2))
    status = harness.tick()
    assert sorted(harness.cluster.trials) == ["job-0", "job-1"]
    assert sorted(harness.cluster.pods) == ["job-0-1", "job-1-1"]
    assert harness.trial_states() == {"job-0": "Running", "job-1": "Running"}
    assert status["phase"] == "Running"
    assert status["trialCounts"]["running"] == 2
    assert status["trials"] == "0/3"
    pod_owner = harness.cluster.pods["job-0-1"]["metadata"]["ownerReferences"][0]
    assert pod_owner["uid"] == harness.cluster.trials["job-0"]["metadata"]["uid"]
    accepted = json.loads(status[ACCEPTED_SPEC_FIELD])["parameters"]
    assert [(p["name"], p["low"], p["high"]) for p in accepted] == [("x", 0.0, 1.0)]


def test_termination_messages_become_results_and_the_job_succeeds_with_the_best_trial():
    harness = Harness(job_body(max_trials=2, parallelism=2))
    harness.tick()
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5, "loss": 0.1}))
    harness.cluster.finish_pod("job-1-1", json.dumps({"score": 0.8, "loss": 0.3}))
    status = harness.tick()
    assert harness.trial_states() == {"job-0": "Succeeded", "job-1": "Succeeded"}
    assert harness.cluster.trials["job-1"]["status"]["value"] == 0.8
    assert status["phase"] == "Succeeded"
    assert status["bestTrial"]["name"] == "job-1"
    assert status["bestTrial"]["metrics"] == {"score": 0.8, "loss": 0.3}
    assert status["bestTrial"]["params"] == harness.cluster.trials["job-1"]["spec"]["params"]
    succeeded = {c["type"]: c for c in status["conditions"]}["Succeeded"]
    assert (succeeded["status"], succeeded["reason"]) == ("True", "MaxTrialsReached")
    assert [reason for _, reason, _ in harness.cluster.events].count("TuningJobSucceeded") == 1


def test_a_failed_pod_is_retried_as_a_new_attempt_then_the_trial_fails_with_the_pods_reason():
    harness = Harness(job_body(max_trials=1, parallelism=1, retries=1))
    harness.tick()
    harness.cluster.finish_pod("job-0-1", "out of memory", exit_code=137, reason="OOMKilled")
    harness.tick()
    assert "job-0-2" in harness.cluster.pods
    assert harness.cluster.trials["job-0"]["status"]["attempts"] == 2
    harness.cluster.finish_pod("job-0-2", "out of memory", exit_code=137, reason="OOMKilled")
    status = harness.tick()
    trial = harness.cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"]) == ("Failed", "OOMKilled")
    assert "exit code 137" in trial["message"]
    assert status["phase"] == "Failed"
    assert status["trialCounts"]["failed"] == 1


def test_a_restarted_operator_continues_from_the_trials_without_duplicates():
    harness = Harness(job_body(max_trials=4, parallelism=2))
    harness.tick()
    params_before = {name: t["spec"]["params"] for name, t in harness.cluster.trials.items()}
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.4}))
    harness.reconciler = harness.fresh_reconciler()  # the operator restarted
    harness.tick()
    harness.reconciler = harness.fresh_reconciler()
    harness.tick()
    assert sorted(harness.cluster.trials) == ["job-0", "job-1", "job-2"]
    assert sorted(harness.cluster.pods) == ["job-1-1", "job-2-1"]  # job-0-1 succeeded: deleted, not recreated
    assert harness.cluster.deleted_pods == ["job-0-1"]
    assert {name: harness.cluster.trials[name]["spec"]["params"] for name in params_before} == params_before
    assert harness.trial_states()["job-0"] == "Succeeded"


def test_a_pruned_trial_is_recorded_before_its_pod_is_deleted():
    steps = {"job-0": 0}

    def scrape(url: str, timeout: float) -> metrics.TrialMetrics:
        steps["job-0"] += 1
        good = url.startswith("http://10.0.0.1:")
        return metrics.TrialMetrics(values={"score": 0.9 if good else 0.01}, step=steps["job-0"])

    body = job_body(max_trials=6, parallelism=2, pruner={"name": "threshold", "options": {"lower": 0.5}})
    harness = Harness(body, scrape=scrape)
    harness.tick()
    harness.cluster.run_pod("job-0-1", ip="10.0.0.1")
    harness.cluster.run_pod("job-1-1", ip="10.0.0.2")
    harness.tick()
    assert harness.trial_states()["job-1"] == "Pruned"
    assert harness.trial_states()["job-0"] == "Running"
    assert "job-1-1" in harness.cluster.deleted_pods
    assert harness.cluster.trials["job-1"]["status"]["intermediate"] == [{"step": 2, "value": 0.01}]
    assert any(reason == "TrialPruned" for _, reason, _ in harness.cluster.events)


def test_an_invalid_job_gets_an_invalid_condition_naming_the_field_and_no_trials():
    body = job_body()
    body["spec"]["sampler"] = {"name": "tpe", "options": {"n_startup_trails": 3}}
    harness = Harness(body)
    status = harness.tick()
    invalid = {c["type"]: c for c in status["conditions"]}["Invalid"]
    assert invalid["status"] == "True"
    assert "spec.sampler.options" in invalid["message"]
    assert status["phase"] == "Failed"
    assert harness.cluster.trials == {}


def test_an_edit_of_the_search_space_is_refused_while_parallelism_edits_apply():
    harness = Harness(job_body(max_trials=5, parallelism=1))
    harness.tick()
    harness.body["spec"]["parameters"][0]["high"] = 9.0
    harness.body["spec"]["budget"]["parallelism"] = 3
    harness.body["metadata"]["generation"] = 2
    status = harness.tick()
    refused = {c["type"]: c for c in status["conditions"]}["SpecChangeRefused"]
    assert refused["status"] == "True"
    assert "spec.parameters" in refused["message"]
    assert len(harness.cluster.trials) == 3
    assert all(t["spec"]["params"]["x"] <= 1.0 for t in harness.cluster.trials.values())


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull"])
def test_a_pod_stuck_pulling_its_image_fails_its_trial_after_the_timeout(reason: str):
    harness = Harness(job_body(max_trials=1, parallelism=1))
    harness.tick()
    harness.cluster.pods["job-0-1"]["status"] = {"phase": "Pending", "containerStatuses": [
        {"name": "t", "state": {"waiting": {"reason": reason, "message": "no such image"}}}]}
    created = harness.cluster.pods["job-0-1"]["metadata"]["creationTimestamp"]
    assert created == "2026-01-01T00:00:00Z"
    harness.tick(now=1_767_225_600.0 + 10)  # ten seconds after creation: still waiting
    assert harness.trial_states()["job-0"] == "Running"
    harness.tick(now=1_767_225_600.0 + OperatorSettings().image_pull_timeout_seconds + 1)
    assert harness.cluster.trials["job-0"]["status"]["reason"] == reason
    assert "job-0-1" in harness.cluster.deleted_pods


def test_a_lagging_job_body_does_not_announce_the_finish_twice():
    harness = Harness(job_body(max_trials=1, parallelism=1))
    harness.tick()
    stale = json.loads(json.dumps(harness.body))
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    harness.reconciler.reconcile(stale, NOW)
    harness.reconciler.reconcile(stale, NOW + 1)  # the watch has not delivered the new status yet
    assert [reason for _, reason, _ in harness.cluster.events].count("TuningJobSucceeded") == 1
    assert harness.cluster.job_status["completionTime"] == harness.cluster.job_status["startTime"]


def test_a_pod_the_api_server_refuses_fails_its_trial_without_retries():
    harness = Harness(job_body(max_trials=1, parallelism=1, retries=3))

    def refuse(namespace: str, pod: dict) -> dict:
        raise ApiError(422, 'Pod "job-0-1" is invalid: spec.containers[0].image: Required value')

    harness.cluster.create_pod = refuse
    harness.tick()
    status = harness.tick()
    trial = harness.cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"]) == ("Failed", "PodRejected")
    assert "spec.containers[0].image" in trial["message"]
    assert status["phase"] == "Failed"


def test_a_pod_no_node_takes_fails_its_trial_as_unschedulable_after_the_timeout():
    harness = Harness(job_body(max_trials=1, parallelism=1))
    harness.tick()
    harness.cluster.pods["job-0-1"]["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes fit"}]}
    harness.tick(now=1_767_225_600.0 + 5)
    assert harness.trial_states()["job-0"] == "Running"
    harness.tick(now=1_767_225_600.0 + OperatorSettings().unschedulable_timeout_seconds)
    trial = harness.cluster.trials["job-0"]["status"]
    assert (trial["state"], trial["reason"], trial["message"]) == ("Failed", "Unschedulable", "0/1 nodes fit")


def test_a_multi_objective_job_lists_its_pareto_front_instead_of_a_best_trial():
    body = job_body(max_trials=2, parallelism=2)
    del body["spec"]["objective"]
    body["spec"]["objectives"] = [{"metric": "score", "direction": "maximize"},
                                  {"metric": "loss", "direction": "minimize"}]
    harness = Harness(body)
    harness.tick()
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5, "loss": 0.1}))
    harness.cluster.finish_pod("job-1-1", json.dumps({"score": 0.8, "loss": 0.3}))
    status = harness.tick()
    assert status["phase"] == "Succeeded"
    assert "bestTrial" not in status
    assert [(t["name"], t["values"]) for t in status["paretoFront"]] == [("job-0", [0.5, 0.1]), ("job-1", [0.8, 0.3])]


def test_with_a_prometheus_source_the_operator_queries_prometheus_for_the_trial():
    asked = []

    def query(base_url: str, series: metrics.TrialSeries, cursor: object | None, timeout: float) -> metrics.Scraped:
        asked.append((base_url, series.tuningjob, series.trial, series.namespace, series.pod, cursor))
        return metrics.Scraped([metrics.TrialMetrics(values={"score": 0.1}, step=1),
                                metrics.TrialMetrics(values={"score": 0.2}, step=2)], cursor=7)

    harness = Harness(job_body(max_trials=1, parallelism=1,
                               metricsSource={"type": "prometheus", "url": "http://prom:9090"}))
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(allowed_prometheus_urls="http://prom:9090/"),
                                       query_prometheus=query)
    harness.tick()
    harness.cluster.run_pod("job-0-1")
    harness.tick()
    harness.tick()
    assert asked == [("http://prom:9090", "job", 0, "ns", "job-0-1", cursor) for cursor in (None, 7)]
    assert harness.cluster.trials["job-0"]["status"]["intermediate"] == [{"step": 1, "value": 0.1},
                                                                         {"step": 2, "value": 0.2}]


def test_raising_max_trials_of_a_finished_job_resumes_it():
    harness = Harness(job_body(max_trials=1, parallelism=1))
    harness.tick()
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    assert harness.tick()["phase"] == "Succeeded"
    harness.body["spec"]["budget"]["maxTrials"] = 2
    harness.body["metadata"]["generation"] = 2
    status = harness.tick()
    assert status["phase"] == "Running"
    assert "completionTime" not in status
    assert sorted(harness.cluster.trials) == ["job-0", "job-1"]


def test_a_prometheus_url_the_admin_did_not_allow_marks_the_job_invalid_and_is_never_queried():
    asked = []

    def query(*args: Any) -> metrics.Scraped:
        asked.append(args)
        return metrics.Scraped()

    harness = Harness(job_body(max_trials=1, parallelism=1,
                               metricsSource={"type": "prometheus", "url": "http://169.254.169.254/latest"}))
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(allowed_prometheus_urls="http://prom:9090"),
                                       query_prometheus=query)
    status = harness.tick()
    assert status["phase"] == "Failed"
    invalid = next(c for c in status["conditions"] if c["type"] == "Invalid")
    assert "spec.metricsSource.url: 'http://169.254.169.254/latest' is not a Prometheus server" in invalid["message"]
    assert "allowed: http://prom:9090" in invalid["message"]
    assert asked == [] and harness.cluster.pods == {}


def test_the_allowed_prometheus_urls_setting_reads_a_comma_separated_list_from_the_environment():
    settings = OperatorSettings.from_env({"KTUNE_OPERATOR_ALLOWED_PROMETHEUS_URLS": "http://a:9090/, http://b:9090"})
    assert settings.allows_prometheus_url("http://a:9090") and settings.allows_prometheus_url("http://b:9090/")
    assert not settings.allows_prometheus_url("http://c:9090") and not OperatorSettings().allows_prometheus_url("")


def test_an_author_cannot_swap_the_accepted_search_space_through_an_annotation():
    harness = Harness(job_body(max_trials=3, parallelism=1))
    harness.tick()
    swapped = [{"name": "x", "type": "float", "low": 50.0, "high": 60.0}]
    harness.body["metadata"]["annotations"]["ktune.dev/accepted-spec"] = json.dumps({"parameters": swapped})
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    harness.tick()
    assert 0.0 <= harness.cluster.trials["job-1"]["spec"]["params"]["x"] <= 1.0
    fresh = harness.fresh_reconciler()  # a restarted operator reads the accepted space from status
    harness.reconciler = fresh
    harness.tick()
    assert json.loads(harness.body["status"][ACCEPTED_SPEC_FIELD])["parameters"] != swapped


def test_a_succeeded_pod_is_deleted_once_its_result_is_recorded_and_a_failed_one_after_its_retention():
    harness = Harness(job_body(max_trials=2, parallelism=2))
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(failed_pod_retention_seconds=600),
                                       scrape=harness.scrape)
    harness.tick()
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    harness.cluster.finish_pod("job-1-1", "", exit_code=1, reason="Error")
    harness.tick()
    assert harness.trial_states() == {"job-0": "Succeeded", "job-1": "Failed"}
    assert "job-0-1" in harness.cluster.deleted_pods and "job-1-1" in harness.cluster.pods
    harness.cluster.pods["job-1-1"]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = \
        "2027-01-15T08:00:00Z"
    harness.tick(now=NOW + 10)
    assert "job-1-1" in harness.cluster.pods
    harness.tick(now=1_800_000_000.0 + 10**6)
    assert "job-1-1" in harness.cluster.deleted_pods


def test_with_delete_succeeded_pods_off_a_succeeded_pod_stays():
    harness = Harness(job_body(max_trials=1, parallelism=1))
    harness.reconciler = JobReconciler(harness.cluster, OperatorSettings(delete_succeeded_pods=False),
                                       scrape=harness.scrape)
    harness.tick()
    harness.cluster.finish_pod("job-0-1", json.dumps({"score": 0.5}))
    assert harness.tick()["phase"] == "Succeeded"
    assert "job-0-1" in harness.cluster.pods and harness.cluster.deleted_pods == []
