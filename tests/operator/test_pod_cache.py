"""The reconciler reading pods from the watch-fed cache: a lagging watch never makes it create or delete twice."""

from typing import Any

from ktune.operator.pod_cache import PodCache
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from tests.operator.fake_cluster import FakeCluster, LaggingPodIndex
from tests.operator.test_reconcile import NOW, Harness, job_body

CREATED = 1_767_225_600.0  # the fake's creationTimestamp of every pod


class CachedHarness(Harness):
    """The reconcile harness with pods read through a `PodCache` over a watch that delivers on `catch_up()`."""

    def __init__(self, body: dict, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self.clock = 0.0
        self.index = LaggingPodIndex(self.cluster, "ns")
        self.cache = PodCache(self.cluster, clock=lambda: self.clock)
        self.cache.attach(self.index)
        self.reconciler = JobReconciler(self.cache, OperatorSettings(), scrape=self.scrape)

    def restart_pass(self) -> None:
        """A pass that failed: the next one rebuilds the job's state (same process, same cache)."""
        self.reconciler = JobReconciler(self.cache, OperatorSettings(), scrape=self.scrape)


def retried(cluster: FakeCluster) -> list[str]:
    return [message for _, reason, message in cluster.events if reason == "TrialRetried"]


def test_a_pod_created_but_not_yet_in_the_pod_cache_is_not_created_again():
    harness = CachedHarness(job_body(max_trials=2, parallelism=2, retries=3))
    harness.tick()
    assert sorted(harness.cluster.pods) == ["job-0-1", "job-1-1"]
    harness.tick(NOW + 2)  # the watch has not delivered the pods yet
    harness.restart_pass()
    harness.tick(NOW + 4)  # nor after a rebuild of the job's state
    assert sorted(harness.cluster.pods) == ["job-0-1", "job-1-1"]
    assert retried(harness.cluster) == []
    assert harness.cluster.deleted_pods == []
    assert {t["status"]["attempts"] for t in harness.cluster.trials.values()} == {1}
    harness.index.catch_up()
    harness.cluster.finish_pod("job-0-1", '{"score": 0.5}')
    harness.cluster.finish_pod("job-1-1", '{"score": 0.7}')
    harness.tick(NOW + 6)  # the cache still shows them Pending
    assert harness.trial_states() == {"job-0": "Running", "job-1": "Running"}
    harness.index.catch_up()
    status = harness.tick(NOW + 8)
    assert status["phase"] == "Succeeded"
    assert harness.cluster.pod_lists == 0  # every pass read the cache


def test_a_pod_the_operator_deleted_is_not_taken_for_a_running_pod_while_the_cache_still_shows_it():
    harness = CachedHarness(job_body(max_trials=1, parallelism=1, retries=1))
    harness.tick()
    harness.cluster.pods["job-0-1"]["status"] = {"phase": "Pending", "containerStatuses": [
        {"name": "t", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}
    harness.index.catch_up()
    harness.tick(CREATED + OperatorSettings().image_pull_timeout_seconds + 1)
    assert harness.cluster.deleted_pods == ["job-0-1"]
    assert sorted(harness.cluster.pods) == ["job-0-2"]
    listed = {pod["metadata"]["name"] for pod in harness.cache.list_pods("ns", "job")}
    assert listed == {"job-0-2"}  # the index still holds job-0-1 as it was before the delete
    harness.tick(CREATED + OperatorSettings().image_pull_timeout_seconds + 3)
    assert harness.cluster.deleted_pods == ["job-0-1"]  # not deleted again as a stray pod
    assert len(retried(harness.cluster)) == 1
    harness.index.catch_up()
    assert {pod["metadata"]["name"] for pod in harness.cache.list_pods("ns", "job")} == {"job-0-2"}
    assert harness.cluster.pod_lists == 0


def test_a_gracefully_deleted_pod_reappears_once_the_cache_shows_its_deletion_under_way():
    cluster = FakeCluster()
    index = LaggingPodIndex(cluster, "ns")
    cache = PodCache(cluster, clock=lambda: 0.0)
    cache.attach(index)
    cache.create_pod("ns", {"metadata": {"name": "job-0-1", "labels": {"ktune.dev/tuningjob": "job"}},
                            "spec": {"containers": [{"name": "t"}]}})
    index.catch_up()
    terminating = cluster.pods["job-0-1"]
    cache.delete_pod("ns", "job-0-1")
    assert cache.list_pods("ns", "job") == []
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:30Z"
    cluster.pods["job-0-1"] = terminating  # the kubelet has not confirmed the deletion yet
    index.catch_up()
    assert [pod["metadata"]["name"] for pod in cache.list_pods("ns", "job")] == ["job-0-1"]


def test_a_created_pod_the_watch_never_shows_is_settled_by_one_list_after_the_timeout():
    cluster = FakeCluster()
    index = LaggingPodIndex(cluster, "ns")
    now = [0.0]
    cache = PodCache(cluster, expectation_timeout=30.0, clock=lambda: now[0])
    cache.attach(index)
    cache.create_pod("ns", {"metadata": {"name": "job-0-1", "labels": {"ktune.dev/tuningjob": "job"}},
                            "spec": {"containers": [{"name": "t"}]}})
    del cluster.pods["job-0-1"]  # deleted by someone else; kopf merged its ADDED and DELETED events
    now[0] = 10.0
    assert [pod["metadata"]["name"] for pod in cache.list_pods("ns", "job")] == ["job-0-1"]
    assert cluster.pod_lists == 0
    now[0] = 31.0
    assert cache.list_pods("ns", "job") == []
    assert cluster.pod_lists == 1
    assert cache.list_pods("ns", "job") == []
    assert cluster.pod_lists == 1
