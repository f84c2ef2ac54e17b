"""kopf wiring only: one timer per TuningJob runs its `JobReconciler`; settings are applied at startup.

ktune's pods are watched once for all jobs and kept in a kopf index, which the reconcilers read through
`PodCache` instead of listing a job's pods on every pass.

kopf attaches a finalizer to a TuningJob while its timer runs (so that the timer is stopped before the
job goes away) and removes it once the job has finished; children go with ownerReferences.
"""

import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from ktune import contract
from ktune.operator.cluster import AlreadyExists, KubeCluster
from ktune.operator.election import LeaseElection, exit_on_lost_lease
from ktune.operator.pod_cache import PodCache
from ktune.operator.reconcile import JobReconciler
from ktune.operator.settings import OperatorSettings
from ktune.operator.status import TERMINAL_PHASES
from ktune.operator.telemetry import Telemetry

FINALIZER = f"{contract.API_GROUP}/operator"
LEASE_NAME = "ktune-operator"
POD_RESOURCE = ("v1", "pods")
# The Cluster calls whose failures ktune_api_errors_total counts (list_pods: the pod cache's rare confirming LIST).
API_OPERATIONS = ("list_trials", "create_trial", "patch_trial_status", "list_pods", "create_pod", "delete_pod",
                  "patch_job_status", "patch_job_annotations", "emit_event")


@dataclass(frozen=True)
class RunOptions:
    """How `ktune operator` runs: which namespaces, peering, liveness."""

    namespaces: Sequence[str] = ()
    all_namespaces: bool = False
    peering: str | None = None
    liveness: str | None = None
    leader_election_namespace: str | None = None  # None: no election (run one replica)
    metrics_port: int | None = None  # the operator's own Prometheus metrics (ktune.operator.telemetry)


def needs_reconciling(body: Mapping[str, Any], **_: Any) -> bool:
    """A finished job whose spec did not change since is left alone (and loses kopf's finalizer)."""
    status = body.get("status") or {}
    finished = status.get("phase") in TERMINAL_PHASES
    return not finished or status.get("observedGeneration") != body["metadata"].get("generation")


def build_registry(settings: OperatorSettings, cluster: PodCache, telemetry: Telemetry) -> kopf.OperatorRegistry:
    """The operator's handlers, bound to `settings` and one API client (with its pod cache) shared by all jobs."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.posting.enabled = False  # our own Events say what happened; kopf's would repeat it per pass
        settings.scanning.disabled = True  # no need to read CustomResourceDefinitions (and no RBAC for it)
        settings.watching.label_selectors[POD_RESOURCE] = contract.LABEL_TUNINGJOB  # only ktune's pods, server-side
        settings.execution.max_workers = operator_settings.max_workers
        # A job deleted mid-pass keeps kopf's finalizer until its timer exits: look again soon, not in 60 s.
        settings.background.cancellation_polling = operator_settings.reconcile_interval_seconds

    operator_settings = settings

    @kopf.index(*POD_RESOURCE, labels={contract.LABEL_TUNINGJOB: kopf.PRESENT}, id="trial_pods", registry=registry)
    async def trial_pods(namespace: str, labels: Mapping[str, str], body: kopf.Body,
                         **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {(namespace, labels[contract.LABEL_TUNINGJOB]): plain(body)}

    @kopf.timer(
        contract.API_GROUP, contract.API_VERSION, contract.TUNINGJOB_PLURAL,
        interval=settings.reconcile_interval_seconds, backoff=settings.reconcile_interval_seconds,
        id="reconcile", when=needs_reconciling, registry=registry,
    )
    def reconcile_tuningjob(body: kopf.Body, memo: kopf.Memo, trial_pods: kopf.Index, **_: Any) -> None:
        cluster.attach(trial_pods)
        reconciler = memo.get("reconciler")
        if reconciler is None:
            reconciler = memo["reconciler"] = JobReconciler(cluster, operator_settings)
        with telemetry.time_reconcile():
            reconciler.reconcile(plain(body), time.time())
        state = reconciler.state
        if state is not None:
            objective = None if state.job.spec.multi_objective else state.job.spec.objectives[0].metric
            telemetry.observe_job(body["metadata"]["namespace"], body["metadata"]["name"], state.engine.records,
                                  state.engine.best_trial, objective)

    @kopf.on.event(contract.API_GROUP, contract.API_VERSION, contract.TUNINGJOB_PLURAL, registry=registry)
    def forget_deleted(type: str, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            telemetry.forget_job(body["metadata"]["namespace"], body["metadata"]["name"])

    return registry


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A kopf body as plain dicts, safe to keep and modify."""
    return {key: _plain(value) for key, value in body.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def run_operator(options: RunOptions, settings: OperatorSettings) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it gracefully)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not one line per job per pass; errors still show
    telemetry = Telemetry()
    if options.metrics_port is not None:
        telemetry.serve(options.metrics_port)
    kube = KubeCluster.from_environment(pool_size=settings.max_workers)
    cluster = PodCache(telemetry.counting_api_errors(kube, API_OPERATIONS, ignored=(AlreadyExists,)))
    if options.leader_election_namespace is not None:
        election = LeaseElection(kube, options.leader_election_namespace, LEASE_NAME,
                                 f"{socket.gethostname()}-{os.getpid()}", settings.lease_duration_seconds)
        election.acquire()
        election.keep(on_lost=exit_on_lost_lease)
    kopf.run(
        registry=build_registry(settings, cluster, telemetry),
        clusterwide=options.all_namespaces,
        namespaces=list(options.namespaces),
        standalone=options.peering is None,
        peering_name=options.peering,
        liveness_endpoint=options.liveness,
    )
