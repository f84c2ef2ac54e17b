"""`ktune import-katib` of Experiments whose trials are Jobs or Kubeflow training jobs (`spec.trial.resource`)."""

from pathlib import Path

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.cli.katib import KatibError, convert_experiment
from ktune.spec.resource_kinds import pod_templates

KATIB_JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
KATIB_KUBEFLOW_SUCCESS = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'


def load(name: str) -> dict:
    return yaml.safe_load((Path(__file__).parent / "fixtures" / f"{name}.yaml").read_text())


def trial_of(experiment: dict) -> dict:
    return convert_experiment(experiment).tuningjob["spec"]["trial"]


@pytest.mark.parametrize(("name", "kind", "pods"), [
    ("pytorchjob-mnist", "PyTorchJob", 2),
    ("tfjob-mnist-with-summaries", "TFJob", 2),
    ("mpijob-horovod", "MPIJob", 3),
    ("xgboostjob-lightgbm", "XGBoostJob", 3),
    ("job-indexed", "Job", 2),
])
def test_a_resource_trial_becomes_spec_trial_resource_with_every_parameter_reference_rewritten(name, kind, pods):
    experiment = load(name)
    conversion = convert_experiment(experiment)
    resource = conversion.tuningjob["spec"]["trial"]["resource"]
    assert (resource["apiVersion"], resource["kind"]) == ("batch/v1" if kind == "Job" else "kubeflow.org/v1", kind)
    job = load_tuningjob(conversion.tuningjob)
    assert job.spec.trial.resource is not None and job.spec.trial.resource.kind == kind
    assert job.spec.trial.pods == pods
    written = yaml.safe_dump(experiment["spec"]["trialTemplate"]["trialSpec"])
    converted = yaml.safe_dump(resource)
    assert "${" not in converted
    assert converted.count("$(KTUNE_PARAM_") == written.count("${trialParameters.") > 0
    for template in pod_templates(job.spec.trial.resource.manifest):
        assert template.template["spec"]["containers"]


def test_a_pytorchjob_reads_its_master_by_default_and_every_replica_reads_the_parameters():
    trial = trial_of(load("pytorchjob-mnist"))
    assert "primaryPod" not in trial
    for replica in trial["resource"]["spec"]["pytorchReplicaSpecs"].values():
        command = replica["template"]["spec"]["containers"][0]["command"]
        assert "--lr=$(KTUNE_PARAM_LR)" in command and "--momentum=$(KTUNE_PARAM_MOMENTUM)" in command
    primary = load_tuningjob(convert_experiment(load("pytorchjob-mnist")).tuningjob).spec.trial.resource
    assert primary is not None and primary.primary_pod == {
        "matchLabels": {"training.kubeflow.org/replica-type": "master"}}


def test_primary_pod_labels_that_pick_another_pod_become_the_primary_pod_selector():
    conversion = convert_experiment(load("tfjob-mnist-with-summaries"))
    trial = conversion.tuningjob["spec"]["trial"]
    assert trial["primaryPod"] == {"matchLabels": {"training.kubeflow.org/replica-type": "worker"}}
    # Both workers match: ktune reads one of them, and says how to pick the first.
    assert any("select 2 pods" in note and 'replica-index: "0"' in note for note in conversion.notes)


@pytest.mark.parametrize(("name", "labels", "says"), [
    ("pytorchjob-mnist", {"training.kubeflow.org/job-role": "master"}, "default primary pod of a PyTorchJob"),
    ("xgboostjob-lightgbm", {"training.kubeflow.org/replica-type": "master"}, "default primary pod of a XGBoostJob"),
    ("mpijob-horovod", {"mpi-job-role": "launcher"}, "standalone mpi-operator's launcher label"),
    ("job-indexed", {"batch.kubernetes.io/job-completion-index": "0"}, "default primary pod of a Job"),
])
def test_primary_pod_labels_that_pick_ktunes_default_pod_are_left_out_with_a_note(name, labels, says):
    experiment = load(name)
    experiment["spec"]["trialTemplate"]["primaryPodLabels"] = labels
    conversion = convert_experiment(experiment)
    assert "primaryPod" not in conversion.tuningjob["spec"]["trial"]
    assert any("primaryPodLabels" in note and says in note for note in conversion.notes)


def test_katibs_default_conditions_map_to_the_kinds_own_reading_with_a_note():
    conversion = convert_experiment(load("mpijob-horovod"))
    assert any("successCondition (condition Succeeded)" in note and "MPIJob" in note for note in conversion.notes)
    assert any("failureCondition (condition Failed)" in note for note in conversion.notes)
    assert not conversion.refused
    job = convert_experiment(load("job-indexed"))
    assert any("successCondition (condition Complete)" in note for note in job.notes)


def test_a_condition_on_another_condition_type_is_refused_naming_what_ktune_reads():
    experiment = load("pytorchjob-mnist")
    experiment["spec"]["trialTemplate"]["successCondition"] = \
        'status.conditions.#(type=="Running")#|#(status=="True")#'
    with pytest.raises(KatibError, match=r"successCondition: tests condition Running, but ktune ends a PyTorchJob "
                                         r"trial on the PyTorchJob's own Succeeded condition"):
        convert_experiment(experiment)
    job = load("job-indexed")
    job["spec"]["trialTemplate"]["successCondition"] = KATIB_KUBEFLOW_SUCCESS  # no Job has a Succeeded condition
    with pytest.raises(KatibError, match="own Complete condition"):
        convert_experiment(job)


def test_a_condition_ktune_cannot_compare_converts_with_a_cannot_be_carried_over_line():
    experiment = load("pytorchjob-mnist")
    experiment["spec"]["trialTemplate"]["failureCondition"] = 'status.replicaStatuses.Master.failed > 0'
    conversion = convert_experiment(experiment)
    assert len(conversion.refused) == 1
    assert "failureCondition `status.replicaStatuses.Master.failed > 0`" in conversion.refused[0]
    assert "own Failed condition" in conversion.refused[0]
    load_tuningjob(conversion.tuningjob)


def test_the_primary_container_is_moved_first_in_every_replica_that_has_it():
    experiment = load("pytorchjob-mnist")
    experiment["spec"]["trialTemplate"]["primaryContainerName"] = "pytorch"
    for replica in experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"].values():
        replica["template"]["spec"]["containers"].insert(0, {"name": "sidecar", "image": "busybox"})
    conversion = convert_experiment(experiment)
    for replica in conversion.tuningjob["spec"]["trial"]["resource"]["spec"]["pytorchReplicaSpecs"].values():
        assert [c["name"] for c in replica["template"]["spec"]["containers"]] == ["pytorch", "sidecar"]
    assert any("`pytorch` moved first" in note for note in conversion.notes)


def test_a_job_of_one_pod_stays_a_one_pod_trial_and_a_job_with_more_becomes_a_resource():
    assert set(trial_of(load("random"))) == {"template"}
    experiment = load("random")
    experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["activeDeadlineSeconds"] = 600
    resource = trial_of(experiment)["resource"]
    assert resource["spec"]["activeDeadlineSeconds"] == 600 and resource["kind"] == "Job"


@pytest.mark.parametrize(("api_version", "kind"), [
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
    ("argoproj.io/v1alpha1", "Workflow"),
    ("tekton.dev/v1beta1", "PipelineRun"),
    ("kubeflow.org/v1", "MXJob"),
    ("kubeflow.org/v2beta1", "MPIJob"),
])
def test_kinds_ktune_cannot_run_are_refused_naming_the_kind_and_the_supported_ones(api_version, kind):
    experiment = load("random")
    experiment["spec"]["trialTemplate"]["trialSpec"] = {"apiVersion": api_version, "kind": kind, "spec": {}}
    with pytest.raises(KatibError, match=rf"{api_version} {kind} cannot be converted: .*batch/v1 Job, "
                                         r"kubeflow\.org/v1 PyTorchJob, .*XGBoostJob"):
        convert_experiment(experiment)


def test_a_kubeflow_job_without_its_replica_specs_is_refused_naming_the_field():
    experiment = load("pytorchjob-mnist")
    experiment["spec"]["trialTemplate"]["trialSpec"]["spec"] = {"runPolicy": {}}
    with pytest.raises(KatibError, match=r"trialSpec\.spec\.pytorchReplicaSpecs: missing"):
        convert_experiment(experiment)
