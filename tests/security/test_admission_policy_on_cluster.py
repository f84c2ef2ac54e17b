"""The escalation question on the real API server: someone who may create TuningJobs but not Pods cannot use
ktune to run pods. manifests/admission/ refuses their TuningJob at `kubectl apply`; a user who may create
pods in the namespace is let through. Both users are ServiceAccounts with their own tokens."""

import json
from pathlib import Path

import pytest
import yaml

from tests.cluster.controlplane import Cluster
from tests.cluster.waiting import wait_until
from tests.operator.operator_harness import stand_in_job

pytestmark = pytest.mark.cluster

POLICY = Path(__file__).resolve().parents[2] / "manifests" / "admission" / "tuningjob-author-may-create-pods.yaml"
JOB_RIGHTS = {"apiGroups": ["ktune.dev"], "resources": ["tuningjobs"], "verbs": ["get", "list", "create", "patch"]}
POD_RIGHTS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}


def user_with(cluster: Cluster, namespace: str, name: str, rules: list[dict]) -> Path:
    """A ServiceAccount with exactly `rules` in `namespace`; its kubeconfig."""
    documents = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    return cluster.service_account_kubeconfig(namespace, name)


def apply_as(cluster: Cluster, kubeconfig: Path, job: dict, *, dry_run: bool = False):
    flags = ["--dry-run=server"] if dry_run else []
    return cluster.kubectl("apply", f"--kubeconfig={kubeconfig}", *flags, "-f", "-", input=json.dumps(job),
                           check=False)


def test_a_tuningjob_author_who_may_not_create_pods_is_refused_at_apply_and_one_who_may_is_not(
    cluster: Cluster, operator_kubeconfig: Path, namespace: str
):
    cluster.kubectl("apply", "-f", str(POLICY))
    try:
        check_two_users(cluster, namespace)
    finally:
        cluster.kubectl("delete", "-f", str(POLICY))


def check_two_users(cluster: Cluster, namespace: str) -> None:
    pod_runner = user_with(cluster, namespace, "pod-runner", [JOB_RIGHTS, POD_RIGHTS])
    job_only = user_with(cluster, namespace, "job-only", [JOB_RIGHTS])
    # RBAC reaches the authorizer through its informers, a moment after the Role is stored: wait for it.
    for user, verb, resource in ((job_only, "create", "tuningjobs.ktune.dev"), (pod_runner, "create", "pods")):
        wait_until(lambda user=user, verb=verb, resource=resource: cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--kubeconfig={user}", check=False,
        ).stdout.strip() == "yes", f"RBAC to let {user.stem} {verb} {resource}", timeout=60)

    # The policy takes effect a moment after it is created: probe with server-side dry runs (which go through
    # admission but store nothing) until it refuses, so that no object slips in before it is in force.
    wait_until(lambda: apply_as(cluster, job_only, stand_in_job("probe", namespace), dry_run=True).returncode != 0,
               "the admission policy to refuse the TuningJob of a user who may not create pods", timeout=60)
    refused = apply_as(cluster, job_only, stand_in_job("sneaky", namespace))
    assert refused.returncode != 0, refused.stdout
    assert "ValidatingAdmissionPolicy" in refused.stderr
    assert f"system:serviceaccount:{namespace}:job-only may not create pods in namespace {namespace}" \
        in refused.stderr
    assert cluster.kubectl("get", "tuningjob", "sneaky", "-n", namespace, check=False).returncode != 0

    allowed = apply_as(cluster, pod_runner, stand_in_job("allowed", namespace))
    assert allowed.returncode == 0, allowed.stderr

    # Changing the spec of a job someone else created is the same escalation, and refused the same way.
    patch = json.dumps({"spec": {"budget": {"maxTrials": 3, "parallelism": 2}}})
    edited = cluster.kubectl("patch", "tuningjob", "allowed", "-n", namespace, "--type=merge", "-p", patch,
                             f"--kubeconfig={job_only}", check=False)
    assert edited.returncode != 0 and "may not create pods" in edited.stderr, edited.stderr
    # Metadata-only changes (labels, finalizers) are no escalation: the garbage collector and the operator
    # make such changes too.
    labelled = cluster.kubectl("label", "tuningjob", "allowed", "-n", namespace, "team=search",
                               f"--kubeconfig={job_only}", check=False)
    assert labelled.returncode == 0, labelled.stderr


def test_an_author_who_may_create_pods_but_not_jobs_is_refused_a_tuningjob_whose_trials_are_jobs(
    cluster: Cluster, operator_kubeconfig: Path, namespace: str
):
    job_rights = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}
    pod_runner = user_with(cluster, namespace, "pod-runner", [JOB_RIGHTS, POD_RIGHTS])
    job_runner = user_with(cluster, namespace, "job-runner", [JOB_RIGHTS, POD_RIGHTS, job_rights])
    for user, resource in ((pod_runner, "pods"), (job_runner, "jobs.batch")):
        wait_until(lambda user=user, resource=resource: cluster.kubectl(
            "auth", "can-i", "create", resource, "-n", namespace, f"--kubeconfig={user}", check=False,
        ).stdout.strip() == "yes", f"RBAC to let {user.stem} create {resource}", timeout=60)
    job_trial = stand_in_job("job-trial", namespace)
    job_trial["spec"]["trial"]["resource"] = {"apiVersion": "batch/v1", "kind": "Job",
                                              "spec": {"template": job_trial["spec"]["trial"].pop("template")}}
    cluster.kubectl("apply", "-f", str(POLICY))
    try:
        wait_until(lambda: apply_as(cluster, pod_runner, job_trial, dry_run=True).returncode != 0,
                   "the admission policy to refuse a Job trial to a user who may not create Jobs", timeout=60)
        refused = apply_as(cluster, pod_runner, job_trial)
        assert refused.returncode != 0
        assert (f"spec.trial.resource: the trials of this TuningJob are Jobs: system:serviceaccount:{namespace}:"
                f"pod-runner may not create jobs (batch) in namespace {namespace}") in refused.stderr, refused.stderr
        assert apply_as(cluster, pod_runner, stand_in_job("pod-trial", namespace)).returncode == 0
        allowed = apply_as(cluster, job_runner, job_trial)
        assert allowed.returncode == 0, allowed.stderr
    finally:
        cluster.kubectl("delete", "-f", str(POLICY))


def test_an_author_who_may_create_pods_and_jobs_but_not_pytorchjobs_is_refused_a_tuningjob_whose_trials_are_those(
    cluster: Cluster, operator_kubeconfig: Path, namespace: str
):
    job_rights = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}
    pytorch_rights = {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["create"]}
    job_runner = user_with(cluster, namespace, "job-runner", [JOB_RIGHTS, POD_RIGHTS, job_rights])
    pytorch_runner = user_with(cluster, namespace, "pytorch-runner", [JOB_RIGHTS, POD_RIGHTS, pytorch_rights])
    wait_until(lambda: cluster.kubectl("auth", "can-i", "create", "jobs.batch", "-n", namespace,
                                       f"--kubeconfig={job_runner}", check=False).stdout.strip() == "yes",
               "RBAC to let job-runner create jobs", timeout=60)
    pytorch_trial = stand_in_job("pytorch-trial", namespace)
    template = pytorch_trial["spec"]["trial"].pop("template")
    template["spec"]["containers"][0]["name"] = "pytorch"
    pytorch_trial["spec"]["trial"]["resource"] = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {
        "pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": template}}}}
    cluster.kubectl("apply", "-f", str(POLICY))
    try:
        wait_until(lambda: apply_as(cluster, job_runner, pytorch_trial, dry_run=True).returncode != 0,
                   "the admission policy to refuse a PyTorchJob trial to a user who may not create them", timeout=60)
        refused = apply_as(cluster, job_runner, pytorch_trial)
        assert refused.returncode != 0
        assert (f"spec.trial.resource: the trials of this TuningJob are PyTorchJobs: system:serviceaccount:"
                f"{namespace}:job-runner may not create pytorchjobs (kubeflow.org) in namespace {namespace}"
                ) in refused.stderr, refused.stderr
        # kubectl cannot ask `auth can-i` about a kind the cluster does not serve: RBAC for pytorch-runner is waited
        # for through the policy itself (no training-operator is needed to create such a TuningJob).
        wait_until(lambda: apply_as(cluster, pytorch_runner, pytorch_trial, dry_run=True).returncode == 0,
                   "the admission policy to let pytorch-runner create a PyTorchJob trial", timeout=60)
        allowed = apply_as(cluster, pytorch_runner, pytorch_trial)
        assert allowed.returncode == 0, allowed.stderr
    finally:
        cluster.kubectl("delete", "-f", str(POLICY))
