"""Warm-starting from another namespace on the real API server: the admission policy lets a job's author import
only from namespaces whose TuningJobs and Trials they may read themselves, and the operator, which cannot know the
author, reads other namespaces only when its admin allows it (with the policy); a source it skips is described
the same whatever the reason. Authors are ServiceAccounts with their own tokens."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.controlplane import Cluster
from tests.cluster.waiting import wait_until
from tests.operator.operator_harness import OperatorProcess, apply, condition, get, stand_in_job, wait_for
from tests.security.test_admission_policy_on_cluster import JOB_RIGHTS, POD_RIGHTS, POLICY, apply_as, user_with

pytestmark = pytest.mark.cluster

READ_RIGHTS = [{"apiGroups": ["ktune.dev"], "resources": ["tuningjobs"], "verbs": ["get"]},
               {"apiGroups": ["ktune.dev"], "resources": ["trials"], "verbs": ["list"]}]
SKIPPED = ("skipped, a TuningJob in another namespace is imported only when it exists, this operator may read it, "
           "and it has this job's parameter names and types")


@pytest.fixture
def other_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A second namespace, holding a TuningJob `source` (never run: no operator watches it)."""
    name = f"{namespace[:50]}-b"
    cluster.kubectl("create", "namespace", name)
    apply(cluster, stand_in_job("source", name, parameters=[{"name": "secret_knob", "type": "float",
                                                             "low": 0.0, "high": 1.0}]))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def warm_starting(name: str, namespace: str, *sources: dict) -> dict:
    job = stand_in_job(name, namespace, budget={"maxTrials": 1, "parallelism": 1},
                       args=["--steps", "1", "--step-seconds", "0.1"])
    job["spec"]["warmStart"] = {"from": list(sources)}
    return job


def can(cluster: Cluster, user: Path, verb: str, resource: str, namespace: str) -> bool:
    return cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--kubeconfig={user}",
                           check=False).stdout.strip() == "yes"


def test_an_author_may_warm_start_from_another_namespace_only_if_they_may_read_its_jobs_and_trials(
    cluster: Cluster, operator_kubeconfig: Path, namespace: str, other_namespace: str
):
    reader = user_with(cluster, namespace, "reader", [JOB_RIGHTS, POD_RIGHTS])
    stranger = user_with(cluster, namespace, "stranger", [JOB_RIGHTS, POD_RIGHTS])
    grant = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "warm-start-reader", "namespace": other_namespace}, "rules": READ_RIGHTS},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "warm-start-reader", "namespace": other_namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "warm-start-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]},
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(grant))
    # RBAC reaches the authorizer through its informers, a moment after the Role is stored: wait for it.
    for user, verb, resource, where in ((reader, "get", "tuningjobs.ktune.dev", other_namespace),
                                        (reader, "list", "trials.ktune.dev", other_namespace),
                                        (reader, "create", "pods", namespace),
                                        (stranger, "create", "pods", namespace)):
        wait_until(lambda user=user, verb=verb, resource=resource, where=where: can(
            cluster, user, verb, resource, where), f"RBAC to let {user.stem} {verb} {resource} in {where}", timeout=60)
    assert not can(cluster, stranger, "get", "tuningjobs.ktune.dev", other_namespace)

    source = {"name": "source", "namespace": other_namespace}
    cluster.kubectl("apply", "-f", str(POLICY))
    try:
        # The policy takes effect a moment after it is created: probe with server-side dry runs (admission runs,
        # nothing is stored) until it refuses the stranger's job, so that no object slips in before it is in force.
        wait_until(lambda: "spec.warmStart.from" in apply_as(
            cluster, stranger, warm_starting("probe", namespace, source), dry_run=True).stderr,
            "the admission policy to refuse a warm start from a namespace the author may not read", timeout=60)

        refused = apply_as(cluster, stranger, warm_starting("sneaky", namespace, {"name": "ranker"}, source))
        assert refused.returncode != 0, refused.stdout
        assert "ValidatingAdmissionPolicy" in refused.stderr
        assert (f"spec.warmStart.from: system:serviceaccount:{namespace}:stranger may not read the TuningJobs and "
                f"Trials of every source in another namespace ({other_namespace}/source), so may not warm-start "
                "from them (remove those, or ask for get on tuningjobs and list on trials in their namespaces)"
                in refused.stderr), refused.stderr
        assert cluster.kubectl("get", "tuningjob", "sneaky", "-n", namespace, check=False).returncode != 0

        # Their own namespace needs no more than the rights to create the job.
        own = apply_as(cluster, stranger, warm_starting("own", namespace, {"name": "ranker", "namespace": namespace}))
        assert own.returncode == 0, own.stderr
        allowed = apply_as(cluster, reader, warm_starting("allowed", namespace, source))
        assert allowed.returncode == 0, allowed.stderr
        # Adding the other namespace's job to a job created without it is the same request, refused the same way.
        patch = json.dumps({"spec": {"warmStart": {"from": [source]}}})
        edited = cluster.kubectl("patch", "tuningjob", "own", "-n", namespace, "--type=merge", "-p", patch,
                                 f"--kubeconfig={stranger}", check=False)
        assert edited.returncode != 0 and "spec.warmStart.from" in edited.stderr, edited.stderr
    finally:
        cluster.kubectl("delete", "-f", str(POLICY))


def test_without_the_admins_consent_the_operator_refuses_another_namespace_and_reads_nothing_there(
    cluster: Cluster, operator_kubeconfig: Path, namespace: str, other_namespace: str, tmp_path: Path
):
    operator = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log").start()
    try:
        apply(cluster, warm_starting("job", namespace, {"name": "source", "namespace": other_namespace}))

        def invalid() -> dict | None:
            job = get(cluster, "tuningjob", namespace, "job")
            return job if (condition(job, "Invalid") or {}).get("status") == "True" else None

        job = wait_for(invalid, 90, "the TuningJob to be marked Invalid", operator)
    finally:
        operator.stop()
    message = condition(job, "Invalid")["message"]
    assert (f"spec.warmStart.from[0]: {other_namespace}/source is in another namespace, and this operator reads "
            "warm-start sources in the job's own namespace only; remove it, or ask an admin to turn on the operator "
            "setting cross_namespace_warm_start (chart settings.crossNamespaceWarmStart)") in message
    assert "secret_knob" not in json.dumps(job)
    assert "warmStartTrials" not in job["status"] and not job["status"].get("importedTrials")
    assert get(cluster, "trials", namespace)["items"] == []


def test_with_the_admins_consent_a_skipped_source_elsewhere_is_described_the_same_whatever_the_reason(
    cluster: Cluster, operator_kubeconfig: Path, namespace: str, other_namespace: str, tmp_path: Path
):
    operator = OperatorProcess(operator_kubeconfig, [namespace], tmp_path / "operator.log",
                               extra_env={"KTUNE_OPERATOR_CROSS_NAMESPACE_WARM_START": "true"}).start()
    try:
        apply(cluster, warm_starting("job", namespace, {"name": "source", "namespace": other_namespace},
                                     {"name": "missing", "namespace": other_namespace}))
        job = wait_for(lambda: (lambda j: j if (j.get("status") or {}).get("phase") == "Succeeded" else None)(
            get(cluster, "tuningjob", namespace, "job")), 90, "the TuningJob to succeed", operator)
    finally:
        operator.stop()
    events = [event for event in get(cluster, "events", namespace)["items"] if event["reason"] == "WarmStartSkipped"]
    assert sorted(event["message"] for event in events) == [
        f"{other_namespace}/missing: {SKIPPED}", f"{other_namespace}/source: {SKIPPED}"]
    assert "secret_knob" not in json.dumps(job) + json.dumps(events)
    assert job["status"]["importedTrials"] == 0
