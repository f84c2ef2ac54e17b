"""The real API server keeps what a rebuilt study needs of a Trial: every step and the pruner's state (#13 item 6).

A field missing from the CRD's schema would be pruned silently by the API server, so this goes through it:
the operator's client writes a Trial's status as the operator does, and the record read back is compared.
"""

import pytest
from kubernetes import client, config

from ktune.engine import TrialRecord, TrialState
from ktune.operator.cluster import KubeCluster
from ktune.operator.trials import record_from_trial, trial_manifest, trial_status
from ktune.spec.status_schema import MAX_INTERMEDIATE_HISTORY_STEPS
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import install_manifests

pytestmark = pytest.mark.cluster


def test_a_trial_read_back_from_the_api_server_holds_every_step_and_the_pruners_state(
        cluster: Cluster, namespace: str) -> None:
    install_manifests(cluster)
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    api = KubeCluster(client.ApiClient(configuration))
    steps = [*range(0, 300, 3), *range(300, MAX_INTERMEDIATE_HISTORY_STEPS + 400)]  # gaps, then past the cap
    record = TrialRecord(number=0, params={"x": 0.25}, state=TrialState.RUNNING, started_at=1_800_000_000.0,
                         intermediate={step: -1.2345678901234567e-3 * step + 1 / 3 for step in steps},
                         system_attrs={"completed_rung_0": 0.61, "completed_rung_1": 0.7,
                                       "ktune_pruning": {"completed_rung_0": 0.5}, "ktune_pruner": {"min_resource": 2}})
    tuningjob = {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob",
                 "metadata": {"name": "history", "namespace": namespace, "uid": "none"}}
    manifest = trial_manifest(tuningjob, 0, record.params, record.started_at)
    del manifest["metadata"]["ownerReferences"]  # no TuningJob: the garbage collector must leave it alone
    api.create_trial(namespace, manifest)
    api.patch_trial_status(namespace, "history-0", trial_status(record, 1, "history-0-1", 100))

    [trial] = api.list_trials(namespace, "history")
    restored = record_from_trial(trial)

    latest = steps[-MAX_INTERMEDIATE_HISTORY_STEPS:]
    assert restored.intermediate == {step: record.intermediate[step] for step in latest}
    assert restored.system_attrs == record.system_attrs
    assert len(trial["status"]["intermediate"]) == 100
