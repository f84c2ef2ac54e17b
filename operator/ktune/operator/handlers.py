"""kopf wiring only: one daemon per TuningJob runs its `JobReconciler` whenever the job is woken; settings are
applied at startup.

A job's pass runs when something it acts on changed: one of its pods reached a milestone (Running, terminated,
deleted), one of its Trials or its spec was edited, a Trial was deleted (`ktune.operator.wakeups` says which
events count), and otherwise every `reconcile_interval_seconds` (the safety net, and the pace of metrics
scraping). The daemons wait on the event loop; passes run on a pool of `max_workers` threads, one at a time per
job, so a slow pass of one job never holds another job's.

ktune's pods are watched once for all jobs and kept in a kopf index, which the reconcilers read through
`PodCache` instead of listing a job's pods on every pass.

With leader election, every write of the operator passes the leader's gate (`ktune.operator.election`): once the
Lease may have passed to another replica, a pass that tries to write is stopped there (NotLeading) and the process
exits soon after. A Trial that another process wrote since this one read it (Conflict) stops the pass too, and the
next one rebuilds the job from the API.

kopf attaches a finalizer to a TuningJob while its daemon runs (so that the daemon is stopped before the job goes
away) and removes it once the job has finished; children go with ownerReferences.
"""

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf

from ktune import contract
from ktune.operator.cluster import AlreadyExists, Conflict, KubeCluster
from ktune.operator.election import LeaseElection, NotLeading, exit_on_lost_lease
from ktune.operator.liveness import Liveness
from ktune.operator.pod_cache import PodCache
from ktune.operator.reconcile import JobReconciler
from ktune.operator.resource_adapters import ADAPTERS, FIRST_RESOURCE_MILESTONE, resource_milestone
from ktune.operator.settings import OperatorSettings
from ktune.operator.status import TERMINAL_PHASES
from ktune.operator.telemetry import Telemetry
from ktune.operator.wakeups import (
    FIRST_POD_MILESTONE,
    FIRST_TRIAL_MILESTONE,
    JobWakeups,
    Milestones,
    job_spec_unhandled,
    pod_milestone,
    run_until_stopped,
    trial_milestone,
)

log = logging.getLogger(__name__)

FINALIZER = f"{contract.API_GROUP}/operator"
LEASE_NAME = "ktune-operator"
POD_RESOURCE = ("v1", "pods")
# Every kind a trial resource may be: (group, version, plural). kopf watches only those the cluster serves when
# the operator starts (it warns "Unresolved resources cannot be served" for the others, e.g. Kubeflow's without
# the training-operator): their jobs are refused MissingAPI, and a CRD installed later is watched from the next
# operator start; until then the passes every `reconcile_interval_seconds` see its changes.
TRIAL_RESOURCES = tuple((adapter.api.group, adapter.api.version, adapter.api.plural) for adapter in ADAPTERS.values())
TRIAL_RESOURCE = (contract.API_GROUP, contract.API_VERSION, contract.TRIAL_PLURAL)
TUNINGJOB_RESOURCE = (contract.API_GROUP, contract.API_VERSION, contract.TUNINGJOB_PLURAL)
# How often kopf looks again at a deleted job whose daemon is still finishing a pass (it exits right after).
DAEMON_EXIT_POLLING_SECONDS = 0.5
# The Cluster calls whose failures ktune_api_errors_total counts (list_pods: the pod cache's rare confirming LIST).
API_OPERATIONS = ("list_trials", "create_trial", "patch_trial_status", "list_pods", "create_pod", "delete_pod",
                  "patch_job_status", "emit_event", "served_resources", "list_trial_resources",
                  "create_trial_resource", "delete_trial_resource")


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


def build_registry(settings: OperatorSettings, cluster: PodCache, telemetry: Telemetry,
                   passes: Executor) -> kopf.OperatorRegistry:
    """The operator's handlers, bound to `settings`, one API client (with its pod cache) shared by all jobs, and
    the thread pool that runs the reconcile passes."""
    registry = kopf.OperatorRegistry()
    wakeups = JobWakeups()
    pod_milestones = Milestones(FIRST_POD_MILESTONE)
    trial_milestones = Milestones(FIRST_TRIAL_MILESTONE)
    resource_milestones = Milestones(FIRST_RESOURCE_MILESTONE)
    job_label = {contract.LABEL_TUNINGJOB: kopf.PRESENT}

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.posting.enabled = False  # our own Events say what happened; kopf's would repeat it per pass
        settings.scanning.disabled = True  # no need to read CustomResourceDefinitions (and no RBAC for it)
        settings.watching.label_selectors[POD_RESOURCE] = contract.LABEL_TUNINGJOB  # only ktune's pods, server-side
        for resource in TRIAL_RESOURCES:  # only trial resources (Jobs, PyTorchJobs, ...), server-side
            settings.watching.label_selectors[resource] = contract.LABEL_TUNINGJOB

    operator_settings = settings

    @kopf.index(*POD_RESOURCE, labels=job_label, id="trial_pods", registry=registry)
    async def trial_pods(namespace: str | None, labels: Mapping[str, str], body: kopf.Body,
                         **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {(namespace or "", labels[contract.LABEL_TUNINGJOB]): plain(body)}

    @kopf.on.event(*POD_RESOURCE, labels=job_label, registry=registry)
    async def wake_on_pod(type: str | None, namespace: str | None, labels: Mapping[str, str], body: kopf.Body,
                          **_: Any) -> None:
        # kopf updates the index before it calls this, so the pass woken here sees the pod as the event shows it.
        job = labels[contract.LABEL_TUNINGJOB]
        deleted_here = cluster.deleted_here(namespace or "", job, body["metadata"]["name"])
        if pod_milestones.changed(type, body["metadata"]["uid"], pod_milestone(body, deleted_here)):
            wakeups.wake(namespace or "", job)

    async def wake_on_trial_resource(type: str | None, namespace: str | None, labels: Mapping[str, str],
                                     body: kopf.Body, **_: Any) -> None:
        # A resource trial's outcome is its verdict condition (Complete, Succeeded, Failed), set after its pods'
        # last events.
        if resource_milestones.changed(type, body["metadata"]["uid"], resource_milestone(body)):
            wakeups.wake(namespace or "", labels[contract.LABEL_TUNINGJOB])

    for resource in TRIAL_RESOURCES:
        kopf.on.event(*resource, labels=job_label, registry=registry,
                      id=f"wake_on_trial_resource/{resource[2]}")(wake_on_trial_resource)

    @kopf.on.event(*TRIAL_RESOURCE, labels=job_label, registry=registry)
    async def wake_on_trial(type: str | None, namespace: str | None, labels: Mapping[str, str], body: kopf.Body,
                            **_: Any) -> None:
        if trial_milestones.changed(type, body["metadata"]["uid"], trial_milestone(body)):
            wakeups.wake(namespace or "", labels[contract.LABEL_TUNINGJOB])

    @kopf.on.event(*TUNINGJOB_RESOURCE, registry=registry)
    async def wake_on_job(type: str | None, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            telemetry.forget_job(namespace or "", name)
        elif job_spec_unhandled(body):
            wakeups.wake(namespace or "", name)

    def reconcile_once(reconciler: JobReconciler, body: dict[str, Any]) -> None:
        try:
            with telemetry.time_reconcile():
                reconciler.reconcile(body, time.time())
        except (NotLeading, Conflict) as error:  # no failure to back off from: the next pass rebuilds from the API
            log.warning("%s/%s: pass stopped: %s", body["metadata"]["namespace"], body["metadata"]["name"], error)
            return
        state = reconciler.state
        if state is not None:
            objective = None if state.job.spec.multi_objective else state.job.spec.objectives[0].metric
            telemetry.observe_job(body["metadata"]["namespace"], body["metadata"]["name"], state.engine.records,
                                  state.engine.best_trial, objective)

    @kopf.daemon(*TUNINGJOB_RESOURCE, id="reconcile", when=needs_reconciling,
                 cancellation_polling=DAEMON_EXIT_POLLING_SECONDS, registry=registry)
    async def reconcile_tuningjob(namespace: str | None, name: str, body: kopf.Body, memo: Any,
                                  stopped: kopf.DaemonStopped, logger: logging.Logger | logging.LoggerAdapter[Any],
                                  **kwargs: Any) -> None:
        cluster.attach(kwargs["trial_pods"])  # kopf passes each index by its id
        reconciler = memo.get("reconciler")
        if reconciler is None:
            reconciler = memo["reconciler"] = JobReconciler(cluster, operator_settings)
        loop = asyncio.get_running_loop()

        async def one_pass() -> None:
            # The body is copied here, on the event loop, which is where kopf updates it from the watch.
            await loop.run_in_executor(passes, reconcile_once, reconciler, plain(body))

        with wakeups.registered(namespace or "", name) as flag:
            await run_until_stopped(flag, stopped, one_pass, operator_settings.reconcile_interval_seconds, logger)

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
    liveness = Liveness()  # answers from now on, a standby waiting for the Lease included
    if options.liveness:
        liveness.serve(options.liveness)
    telemetry = Telemetry()
    if options.metrics_port is not None:
        telemetry.serve(options.metrics_port)
    kube = KubeCluster.from_environment(pool_size=settings.max_workers)
    cluster = PodCache(telemetry.counting_api_errors(kube, API_OPERATIONS, ignored=(AlreadyExists, NotLeading)))
    if options.leader_election_namespace is not None:
        election = LeaseElection(kube, options.leader_election_namespace, LEASE_NAME,
                                 f"{socket.gethostname()}-{os.getpid()}", settings.lease_duration_seconds)
        kube.gate = election.gate  # closed until the Lease is acquired
        liveness.waiting_for(election)
        election.acquire()
        liveness.starting()
        election.keep(on_lost=exit_on_lost_lease)
    # Leaving the `with` waits for passes still running when kopf stops, so that none is cut mid-write.
    with ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="reconcile") as passes:
        registry = build_registry(settings, cluster, telemetry, passes)
        liveness.follow_kopf(registry)
        kopf.run(
            registry=registry,
            clusterwide=options.all_namespaces,
            namespaces=list(options.namespaces),
            standalone=options.peering is None,
            peering_name=options.peering,
        )
