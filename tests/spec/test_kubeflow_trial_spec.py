"""`spec.trial.resource` of a Kubeflow kind (PyTorchJob, TFJob, MPIJob, XGBoostJob), `spec.trial.primaryPod`, the
kind table's pod templates and default primary pods, and hours that count every replica's own requests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.engine import Engine
from ktune.spec import SpecError
from ktune.spec.resource_kinds import (
    COMPLETION_INDEX_LABEL,
    REPLICA_INDEX_LABEL,
    REPLICA_TYPE_LABEL,
    map_pod_templates,
    pod_templates,
    selector_matches,
)
from ktune.spec.selector import selector_text

CORPUS = Path(__file__).parents[1] / "fixtures" / "tuningjobs"
HOUR = 3600.0
RESOURCE = "spec.trial.resource"


def pytorchjob() -> dict[str, Any]:
    return yaml.safe_load((CORPUS / "valid" / "pytorchjob.yaml").read_text())


def replica(container: str, replicas: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": {"containers": [{"name": container, "image": "example.com/t:1"}]}}}
    return spec if replicas is None else {"replicas": replicas, **spec}


def with_resource(kind: str, replica_specs: dict[str, Any]) -> dict[str, Any]:
    raw = pytorchjob()
    del raw["spec"]["budget"]["maxGpuHours"]
    key = {"PyTorchJob": "pytorchReplicaSpecs", "TFJob": "tfReplicaSpecs", "MPIJob": "mpiReplicaSpecs",
           "XGBoostJob": "xgbReplicaSpecs"}[kind]
    raw["spec"]["trial"]["resource"] = {"apiVersion": "kubeflow.org/v1", "kind": kind, "spec": {key: replica_specs}}
    return raw


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_tuningjob(raw)
    return caught.value.problems


def replicas_of(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["spec"]["trial"]["resource"]["spec"]["pytorchReplicaSpecs"]


def test_a_pytorchjob_trial_runs_its_master_and_workers_and_the_master_is_the_metrics_pod() -> None:
    raw = pytorchjob()
    replicas_of(raw)["Worker"]["replicas"] = 3
    trial = load_tuningjob(raw).spec.trial
    assert trial.resource is not None and trial.resource.kind == "PyTorchJob"
    assert trial.pods == 4
    assert trial.resource.primary_pod == {"matchLabels": {REPLICA_TYPE_LABEL: "master"}}
    assert trial.template == replicas_of(raw)["Master"]["template"], "the primary replica's template"
    filled = trial.resource.manifest["spec"]["pytorchReplicaSpecs"]
    assert [filled[name]["restartPolicy"] for name in filled] == ["Never", "Never"], \
        "ktune's retries re-create the whole job: no replica restarts in place"
    assert [(path, replicas) for path, _, replicas in pod_templates(trial.resource.manifest)] == [
        ("spec.pytorchReplicaSpecs.Master.template", 1), ("spec.pytorchReplicaSpecs.Worker.template", 3)]


def test_replica_types_are_matched_without_case_and_written_in_rank_order_as_the_operator_spells_them() -> None:
    raw = pytorchjob()
    specs = dict(replicas_of(raw))
    replicas_of(raw).clear()
    replicas_of(raw).update({"worker": specs["Worker"], "master": specs["Master"]})
    manifest = load_tuningjob(raw).spec.trial.resource.manifest  # type: ignore[union-attr]
    assert list(manifest["spec"]["pytorchReplicaSpecs"]) == ["Master", "Worker"]


def test_a_given_restart_policy_and_other_spec_fields_are_kept() -> None:
    raw = pytorchjob()
    replicas_of(raw)["Worker"]["restartPolicy"] = "OnFailure"
    raw["spec"]["trial"]["resource"]["spec"]["runPolicy"] = {"cleanPodPolicy": "All"}
    manifest = load_tuningjob(raw).spec.trial.resource.manifest  # type: ignore[union-attr]
    assert manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] == "OnFailure"
    assert manifest["spec"]["runPolicy"] == {"cleanPodPolicy": "All"}


@pytest.mark.parametrize("kind, replica_specs, primary, pods", [
    ("PyTorchJob", {"Worker": replica("pytorch", 2)}, {REPLICA_TYPE_LABEL: "worker", REPLICA_INDEX_LABEL: "0"}, 2),
    ("TFJob", {"Worker": replica("tensorflow", 2), "Chief": replica("tensorflow"), "PS": replica("tensorflow")},
     {REPLICA_TYPE_LABEL: "chief"}, 4),
    ("TFJob", {"Worker": replica("tensorflow", 2), "Master": replica("tensorflow")}, {REPLICA_TYPE_LABEL: "master"},
     3),
    ("TFJob", {"Worker": replica("tensorflow", 2)}, {REPLICA_TYPE_LABEL: "worker", REPLICA_INDEX_LABEL: "0"}, 2),
    ("MPIJob", {"Launcher": replica("launcher"), "Worker": replica("mpi", 2)}, {REPLICA_TYPE_LABEL: "launcher"}, 3),
    ("XGBoostJob", {"Master": replica("xgboost"), "Worker": replica("xgboost", 2)}, {REPLICA_TYPE_LABEL: "master"},
     3),
])
def test_each_kubeflow_kind_loads_with_its_default_primary_pod(kind: str, replica_specs: dict[str, Any],
                                                               primary: dict[str, str], pods: int) -> None:
    trial = load_tuningjob(with_resource(kind, replica_specs)).spec.trial
    assert trial.resource is not None and trial.resource.kind == kind
    assert trial.resource.primary_pod == {"matchLabels": primary}
    assert trial.pods == pods


def test_job_default_primary_pods_index_0_of_an_indexed_job_and_none_for_a_nonindexed_one() -> None:
    raw = yaml.safe_load((CORPUS / "valid" / "indexed-job.yaml").read_text())
    assert load_tuningjob(raw).spec.trial.resource.primary_pod == {  # type: ignore[union-attr]
        "matchLabels": {COMPLETION_INDEX_LABEL: "0"}}
    job_spec = raw["spec"]["trial"]["resource"]["spec"]
    del job_spec["completionMode"], job_spec["completions"]
    assert load_tuningjob(raw).spec.trial.resource.primary_pod is None  # type: ignore[union-attr]


def test_a_given_primary_pod_replaces_the_default() -> None:
    raw = pytorchjob()
    selector = {"matchLabels": {REPLICA_TYPE_LABEL: "worker"},
                "matchExpressions": [{"key": REPLICA_INDEX_LABEL, "operator": "In", "values": ["0"]}]}
    raw["spec"]["trial"]["primaryPod"] = selector
    job = load_tuningjob(raw)
    assert job.spec.trial.resource.primary_pod == selector  # type: ignore[union-attr]
    assert job.manifest["spec"]["trial"]["primaryPod"] == selector
    assert selector_text(selector) == f"{REPLICA_TYPE_LABEL}=worker,{REPLICA_INDEX_LABEL} in (0)"


@pytest.mark.parametrize("kind, replica_specs, expected", [
    ("PyTorchJob", {"Master": replica("pytorch"), "Worker": replica("pytorch", 0)},
     f"{RESOURCE}.spec.pytorchReplicaSpecs.Worker.replicas: must be >= 1 (got 0): leave Worker out of "
     "pytorchReplicaSpecs rather than run no pod of it"),
    ("PyTorchJob", {"Master": {"replicas": 1}},
     f"{RESOURCE}.spec.pytorchReplicaSpecs.Master.template: is required: the Master replica's pod template (a "
     "PodTemplateSpec with at least one container)"),
    ("PyTorchJob", {"Master": replica("pytorch", 2)},
     f"{RESOURCE}.spec.pytorchReplicaSpecs.Master.replicas: must be 1: a PyTorchJob has one Master (got 2); more "
     "pods go in Worker"),
    ("PyTorchJob", {"Chief": replica("pytorch")},
     f"{RESOURCE}.spec.pytorchReplicaSpecs.Chief: unknown replica type of a PyTorchJob: one of Master, Worker"),
    ("PyTorchJob", {"Master": replica("pytorch"), "master": replica("pytorch")},
     f"{RESOURCE}.spec.pytorchReplicaSpecs.master: replica type Master is given twice (replica types are matched "
     "without case)"),
    ("PyTorchJob", {"Master": replica("trainer")},
     f"{RESOURCE}.spec.pytorchReplicaSpecs.Master.template.spec.containers: needs a container named 'pytorch': the "
     "training-operator requires one in every replica (its exit code is the replica's) (got trainer)"),
    ("PyTorchJob", {"Master": {**replica("pytorch"), "restartPolicy": "Sometimes"}},
     f"{RESOURCE}.spec.pytorchReplicaSpecs.Master.restartPolicy: must be one of Never, OnFailure, Always, ExitCode "
     "(got 'Sometimes')"),
    ("PyTorchJob", {}, f"{RESOURCE}.spec.pytorchReplicaSpecs: must have at least one replica type (Master, Worker) "
                       "(got an empty mapping)"),
    ("TFJob", {"Chief": replica("tensorflow"), "Master": replica("tensorflow")},
     f"{RESOURCE}.spec.tfReplicaSpecs: at most one of Chief, Master (the TFJob's rank-0 replica)"),
    ("MPIJob", {"Worker": replica("mpi", 2)},
     f"{RESOURCE}.spec.mpiReplicaSpecs.Launcher: is required: every MPIJob has a Launcher replica"),
    ("XGBoostJob", {"Worker": replica("xgboost", 2)},
     f"{RESOURCE}.spec.xgbReplicaSpecs.Master: is required: every XGBoostJob has a Master replica"),
    ("XGBoostJob", {"Master": {"template": {"spec": {"containers": []}}}},
     f"{RESOURCE}.spec.xgbReplicaSpecs.Master.template.spec.containers: must be a non-empty list (got a list of 0)"),
])
def test_bad_replica_specs_are_refused_naming_the_field_and_the_fix(kind: str, replica_specs: dict[str, Any],
                                                                     expected: str) -> None:
    assert expected in problems(with_resource(kind, replica_specs))


def test_a_kubeflow_job_without_replica_specs_or_with_another_kinds_fields_is_refused() -> None:
    raw = with_resource("PyTorchJob", {})
    raw["spec"]["trial"]["resource"]["spec"] = {"tfReplicaSpecs": {"Worker": replica("pytorch")}}
    assert problems(raw) == [
        f"{RESOURCE}.spec.tfReplicaSpecs: unknown field of a PyTorchJob; did you mean 'pytorchReplicaSpecs'? "
        "(allowed: pytorchReplicaSpecs, runPolicy, elasticPolicy, nprocPerNode)",
        f"{RESOURCE}.spec.pytorchReplicaSpecs: is required: the PyTorchJob's replica specs, a mapping of replica "
        "type (Master, Worker) to {replicas, template}"]


@pytest.mark.parametrize("selector, expected", [
    ({}, "spec.trial.primaryPod: must have matchLabels or matchExpressions: an empty selector selects every pod"),
    ({"matchLabel": {"a": "b"}}, "spec.trial.primaryPod.matchLabel: unknown field; did you mean 'matchLabels'?"),
    ({"matchLabels": {"training.kubeflow.org/replica-index": 0}},
     "spec.trial.primaryPod.matchLabels: label values must be strings (got 0); quote numbers in YAML"),
    ({"matchLabels": {"-bad": "x"}}, "spec.trial.primaryPod.matchLabels: label key '-bad' must be [prefix/]name"),
    ({"matchLabels": {"Bad_Prefix/role": "x"}},
     "spec.trial.primaryPod.matchLabels: the prefix of label key 'Bad_Prefix/role' must be a DNS subdomain"),
    ({"matchExpressions": [{"key": "role", "operator": "In"}]},
     "spec.trial.primaryPod.matchExpressions[0].values: must be a non-empty list of label values with operator In"),
    ({"matchExpressions": [{"key": "role", "operator": "Exists", "values": ["a"]}]},
     "spec.trial.primaryPod.matchExpressions[0].values: must be empty with operator Exists"),
    ({"matchExpressions": [{"operator": "Exists"}]}, "spec.trial.primaryPod.matchExpressions[0].key: is required"),
    ({"matchExpressions": {"key": "role"}}, "spec.trial.primaryPod.matchExpressions: must be a list"),
    ("master", "spec.trial.primaryPod: must be a mapping (got 'master')"),
])
def test_a_malformed_primary_pod_selector_is_refused_naming_the_field(selector: Any, expected: str) -> None:
    raw = pytorchjob()
    raw["spec"]["trial"]["primaryPod"] = selector
    assert any(problem.startswith(expected) for problem in problems(raw)), problems(raw)


def test_primary_pod_needs_a_resource() -> None:
    raw = yaml.safe_load((CORPUS / "valid" / "minimal.yaml").read_text())
    raw["spec"]["trial"]["primaryPod"] = {"matchLabels": {REPLICA_TYPE_LABEL: "master"}}
    assert problems(raw)[0].startswith("spec.trial.primaryPod: needs spec.trial.resource: a template trial is one "
                                       "pod, which is its metrics pod; remove primaryPod")


def test_selectors_match_as_kubernetes_matches_them() -> None:
    labels = {REPLICA_TYPE_LABEL: "worker", REPLICA_INDEX_LABEL: "0"}
    assert selector_matches({"matchLabels": {REPLICA_TYPE_LABEL: "worker"}}, labels)
    assert not selector_matches({"matchLabels": {REPLICA_TYPE_LABEL: "master"}}, labels)
    assert selector_matches({"matchExpressions": [{"key": REPLICA_INDEX_LABEL, "operator": "In",
                                                   "values": ["0", "1"]}]}, labels)
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["a"]}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)


def test_map_pod_templates_rewrites_every_replica_and_leaves_the_original_alone() -> None:
    manifest = load_tuningjob(pytorchjob()).spec.trial.resource.manifest  # type: ignore[union-attr]
    before = copy.deepcopy(manifest)

    def labelled(template: dict[str, Any]) -> dict[str, Any]:
        return {**template, "metadata": {"labels": {"seen": "yes"}}}

    mapped = map_pod_templates(manifest, labelled)
    assert manifest == before
    assert [t.template["metadata"] for t in pod_templates(mapped)] == [{"labels": {"seen": "yes"}}] * 2
    job = yaml.safe_load((CORPUS / "valid" / "indexed-job.yaml").read_text())["spec"]["trial"]["resource"]
    assert map_pod_templates(job, labelled)["spec"]["template"]["metadata"] == {"labels": {"seen": "yes"}}


def test_gpu_and_cpu_hours_count_each_replicas_own_requests() -> None:
    raw = pytorchjob()
    replicas_of(raw)["Worker"]["replicas"] = 3
    replicas_of(raw)["Worker"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "2"}
    engine = Engine(load_tuningjob(raw).spec)
    trial = engine.ask(now=0.0)
    engine.tell_succeeded(trial.number, {"ndcg_at_10": 0.5}, now=HOUR)
    usage = engine.budget_usage(HOUR)
    assert (usage.gpu_hours, usage.cpu_hours) == pytest.approx((2 + 3 * 1, 1 + 3 * 2)), \
        "Master: 2 GPUs and 1 CPU (the default); each of 3 Workers: 1 GPU and 2 CPUs"


def test_a_gpu_budget_needs_gpus_in_some_replica_and_names_every_template() -> None:
    raw = pytorchjob()
    for spec in replicas_of(raw).values():
        del spec["template"]["spec"]["containers"][0]["resources"]
    assert problems(raw) == [
        "spec.budget.maxGpuHours: the trial template requests no nvidia.com/gpu (spec.trial.resource.spec."
        "pytorchReplicaSpecs.Master.template, spec.trial.resource.spec.pytorchReplicaSpecs.Worker.template): set "
        "resources.limits.nvidia.com/gpu on its containers, or use maxCpuHours"]


def test_an_unreadable_quantity_in_a_worker_names_that_replica() -> None:
    raw = pytorchjob()
    replicas_of(raw)["Worker"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    assert problems(raw) == [
        "spec.trial.resource.spec.pytorchReplicaSpecs.Worker.template.spec.containers: resources: not a Kubernetes "
        "quantity: 'lots' (needed to account spec.budget's hours)"]
