"""One level-based pass over one TuningJob: compare what should run with what runs, act, write status.

The decisions about trials are the trial lifecycle's (`ktune.trials.driver`), the same as `ktune run`'s;
this module keeps what is the operator's own: the accepted spec, the study rebuilt from Trial objects, stray
and finished pods. Attempts are pods (`PodBackend`); what the driver learns is written to Trial objects and
Events (`TrialObjects`); the TuningJob's status by `StatusWriter`.

A `JobReconciler` lives as long as its TuningJob is watched by this operator process and keeps the job's
engine between passes. Everything it needs to continue lives in the API (Trial objects, pods, the
job's status): a fresh reconciler after a restart rebuilds the same study from the
Trials, finds each running trial's pod, and creates nothing twice, because every name it creates is
deterministic (`<job>-<number>` for a Trial, `<job>-<number>-<attempt>` for a pod) and the API server
refuses a second object of the same name. A Trial's outcome is written before its pod is deleted.

Warm start: the succeeded trials of the jobs in `spec.warmStart.from` are read from their Trial objects once,
when the job is first accepted, and kept in its status for every rebuild (`ktune.operator.warm_start_sources`).
Hours: `status.gpuHoursUsed`/`cpuHoursUsed` count each trial from its Trial's startTime (when it was asked
for, just before its first pod was created) to its finishTime, so the time a pod waits for a node counts
too; they are written with the other status changes, not on their own at every pass.
"""

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ktune import metrics
from ktune.algorithms import load_tuningjob
from ktune.engine import JOB_STOPPED, TRIAL_DELETED, Engine, TrialRecord, TrialState
from ktune.engine.warm_start import ImportedTrials
from ktune.operator.cluster import ApiError, Cluster
from ktune.operator.ownership import Ownership
from ktune.operator.pod_backend import (
    PodBackend,
    QueryPrometheus,
    Scrape,
    direct_or_prometheus,
    pod_finished,
    pod_finished_at,
)
from ktune.operator.pod_logs import PodLogMetrics
from ktune.operator.pod_policy import trial_forbidden_fields
from ktune.operator.pods import controller_uid, pod_attempt, trial_name
from ktune.operator.resource_adapters import ADAPTERS, adapter_for, controlled_by_trial_resource
from ktune.operator.resource_backend import ResourceBackend
from ktune.operator.settings import OperatorSettings
from ktune.operator.status_writer import ACCEPTED_SPEC_FIELD, INVALID_SPEC, MISSING_API, JobProgress, StatusWriter
from ktune.operator.trial_objects import TrialObjects
from ktune.operator.trials import epoch, record_from_trial, recorded_attempt, trial_attempts, trial_status
from ktune.operator.warm_start_sources import WarmStartSources, cross_namespace_problems
from ktune.spec import SpecError, TuningJob
from ktune.trials.backend import Backend
from ktune.trials.driver import DriverSettings, TrialDriver

log = logging.getLogger(__name__)

# Changing these after trials ran would mix trials of different studies: such edits are refused.
UNSAFE_FIELDS = ("objective", "objectives", "metrics", "parameters", "sampler", "pruner", "warmStart")
@dataclass
class JobState:
    """The job's engine and the trial lifecycle over its live trials, rebuilt from the API whenever in doubt."""

    job: TuningJob
    engine: Engine
    driver: TrialDriver
    trials: TrialObjects
    imported: ImportedTrials = field(default_factory=ImportedTrials)


class JobReconciler:
    """Reconciles one TuningJob; `reconcile(body, now)` is one pass (never two at once for one job)."""

    def __init__(
        self,
        cluster: Cluster,
        settings: OperatorSettings,
        scrape: Scrape = metrics.scrape,
        query_prometheus: QueryPrometheus = metrics.query_prometheus,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.scrape = scrape
        self.query_prometheus = query_prometheus
        self.state: JobState | None = None
        self.status = StatusWriter(cluster, settings)
        self.ownership = Ownership()
        """Which listed Trials and pods are this job's (by owner uid, not labels)."""
        self.accepted_text: str | None = None
        """The accepted search space (JSON), once known: status.acceptedSpec as read or written."""
        self.warm_start = WarmStartSources(cluster, settings)

    # ---- the pass -------------------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any], now: float) -> None:
        """One pass. Any API error leaves the engine to be rebuilt from the API on the next pass."""
        try:
            self._reconcile(copy.deepcopy(dict(body)), now)
        except Exception:
            self.state = None
            raise

    def _reconcile(self, body: dict[str, Any], now: float) -> None:
        self.accepted_text = self.accepted_text or (body.get("status") or {}).get(ACCEPTED_SPEC_FIELD)
        # This process is the status's only writer: its last write is newer than a body that lags behind.
        if self.status.written is not None:
            body["status"] = copy.deepcopy(self.status.written)
        previous = body.get("status") or {}
        job, refused = self._accepted_job(body, now)
        if job is None:
            return
        state = self._state(body, job, now)
        namespace = _namespace(body)
        listed = self.cluster.list_pods(namespace, job.name)
        pods = {pod["metadata"]["name"]: pod for pod in listed if not controlled_by_trial_resource(pod)}
        self._delete_stray_pods(body, state, pods, now)
        logs = PodLogMetrics(self.cluster, job, namespace, self.settings.scrape_timeout_seconds)
        read = direct_or_prometheus(job, namespace, self.settings.scrape_timeout_seconds, self.scrape,
                                    self.query_prometheus, logs.read)
        state.trials.body = body
        final_result = logs.final_result if job.spec.metrics_source.type == "logs" else None
        backend: Backend
        resource = job.spec.trial.resource
        if resource is None:
            backend = PodBackend(self.cluster, job, namespace, pods, state.trials.owners, read,
                                 delete_succeeded=self.settings.delete_succeeded_pods, final_result=final_result)
        else:
            api = adapter_for(resource.api_version, resource.kind).api
            backend = ResourceBackend(self.cluster, job, namespace,
                                      self.cluster.list_trial_resources(namespace, api, job.name), listed,
                                      state.trials.owners, read, self.settings.delete_succeeded_pods, final_result)
            backend.delete_strays(state.driver.live_attempts(), now, self.settings.failed_pod_retention_seconds)
        decision = state.driver.advance(backend, now, launch=not job.spec.suspend)
        if state.driver.conflict:
            self.state = None
            return
        progress = JobProgress(job, state.engine, state.driver.deferred, state.imported.dropped, self.accepted_text,
                               self.warm_start.text)
        self.status.write_progress(body, progress, previous, decision, refused, now)

    # ---- the spec: validity and refused edits ----------------------------------------------------

    def _accepted_job(self, body: dict[str, Any], now: float) -> tuple[TuningJob | None, str | None]:
        """The job to run (its search space as first accepted) and why an edit was refused, if one was.

        On the first valid pass the search space is stored in status.acceptedSpec; later passes run with it
        whatever the spec says now, so that a restarted operator keeps the study the trials belong to.
        """
        accepted_text = self.accepted_text
        if accepted_text is None:
            try:
                job = load_tuningjob(body)
            except SpecError as error:
                self._write_invalid(body, error.problems, now)
                return None, None
            if self._refused_by_policy(body, job, now):
                return None, None
            accepted = {key: job.manifest["spec"][key] for key in UNSAFE_FIELDS if key in job.manifest["spec"]}
            self.accepted_text = json.dumps(accepted, sort_keys=True)
            self.cluster.patch_job_status(_namespace(body), job.name, {ACCEPTED_SPEC_FIELD: self.accepted_text})
            return job, None
        accepted = json.loads(accepted_text)
        effective = copy.deepcopy(body)
        effective["spec"] = {key: value for key, value in body["spec"].items() if key not in UNSAFE_FIELDS}
        effective["spec"].update(accepted)
        try:
            job = load_tuningjob(effective)
        except SpecError as error:
            self._write_invalid(body, error.problems, now)
            return None, None
        if self._refused_by_policy(body, job, now):
            return None, None
        return job, _refused_edit(body, accepted)

    def _refused_by_policy(self, body: dict[str, Any], job: TuningJob, now: float) -> bool:
        """Mark the job Invalid when the admin forbids what it asks for: its trial template, its Prometheus URL."""
        problems = trial_forbidden_fields(job.spec.trial) if self.settings.forbid_privileged_trials else []
        source = job.spec.metrics_source
        if source.type == "prometheus" and not self.settings.allows_prometheus_url(source.url or ""):
            allowed = self.settings.allowed_prometheus_urls or "none"
            problems.append(f"spec.metricsSource.url: {source.url!r} is not a Prometheus server this operator may "
                            f"query (allowed: {allowed}); an admin allows servers with the operator setting "
                            "allowed_prometheus_urls (chart settings.allowedPrometheusUrls)")
        problems += cross_namespace_problems(job, _namespace(body), self.settings)
        if problems:
            self._write_invalid(body, problems, now)
            return True
        resource = job.spec.trial.resource
        missing = None if resource is None else adapter_for(resource.api_version, resource.kind).missing_api(
            self.cluster)
        if missing is not None:
            self._write_invalid(body, [missing], now, reason=MISSING_API)
        return missing is not None

    def _write_invalid(self, body: dict[str, Any], problems: list[str], now: float,
                       reason: str = INVALID_SPEC) -> None:
        self.status.write_invalid(body, problems, now, reason)
        self._stop_running_trials(body, "the TuningJob became invalid (see its Invalid condition)", now)
        self.state = None

    def _stop_running_trials(self, body: dict[str, Any], message: str, now: float) -> None:
        """A job that cannot run (it became invalid) stops what it runs: each Running trial is Failed with
        JobStopped, then its pods are deleted (the outcome is written first, as the driver does)."""
        namespace, name = _namespace(body), body["metadata"]["name"]
        trials = self.ownership.trials(body, self.cluster.list_trials(namespace, name))
        for trial in trials:
            record = record_from_trial(trial)
            if record.state != TrialState.RUNNING:
                continue
            record.state, record.reason, record.message, record.finished_at = (
                TrialState.FAILED, JOB_STOPPED, message, now)
            attempt_name, shape = recorded_attempt(trial)
            status = trial_status(record, trial_attempts(trial), attempt_name, self.settings.intermediate_values_kept,
                                  shape=shape)
            self.cluster.patch_trial_status(namespace, trial["metadata"]["name"], status,
                                            trial["metadata"].get("resourceVersion"))
        owners = {int(trial["spec"]["number"]): trial for trial in trials}
        pods = [pod for pod in self.cluster.list_pods(namespace, name) if not controlled_by_trial_resource(pod)]
        for _, pod in self.ownership.pods(body, owners, pods).values():
            if not pod_finished(pod) and not pod["metadata"].get("deletionTimestamp"):
                self.cluster.delete_pod(namespace, pod["metadata"]["name"])
        self._stop_running_resources(body, {trial["metadata"]["uid"] for trial in trials})

    def _stop_running_resources(self, body: dict[str, Any], uids: set[str]) -> None:
        """Delete the trials' resources still running (finished ones stay for their pods' logs), with all their
        pods. The job is invalid: its kind is read from the body as written, and one whose API the cluster does
        not serve has nothing to stop."""
        resource = ((body.get("spec") or {}).get("trial") or {}).get("resource")
        adapter = ADAPTERS.get((str(resource.get("apiVersion")), str(resource.get("kind")))) \
            if isinstance(resource, Mapping) else None
        if adapter is None:
            return
        namespace = _namespace(body)
        try:
            listed = self.cluster.list_trial_resources(namespace, adapter.api, body["metadata"]["name"])
        except ApiError as error:
            if error.status == 404:
                return
            raise
        for obj in listed:
            if (controller_uid(obj) in uids and not adapter.finished(obj)
                    and not obj["metadata"].get("deletionTimestamp")):
                self.cluster.delete_trial_resource(namespace, adapter.api, obj["metadata"]["name"])

    # ---- the engine and live trials ---------------------------------------------------------------

    def _state(self, body: dict[str, Any], job: TuningJob, now: float) -> JobState:
        if self.state is not None and self.state.job.spec == job.spec:
            self.state.job = job
            return self.state
        started_at = epoch((body.get("status") or {}).get("startTime")) or now
        listed = self.cluster.list_trials(_namespace(body), job.name)
        trials = sorted(self.ownership.trials(body, listed), key=lambda t: t["spec"]["number"])
        counted = int(((body.get("status") or {}).get("trialCounts") or {}).get("total") or 0)
        records = _with_deleted_trials([record_from_trial(trial) for trial in trials], counted)
        deleted = [r.number for r in records if r.reason == TRIAL_DELETED]
        if deleted:
            self.cluster.emit_event(body, "Warning", "TrialsDeleted",
                                    f"the Trial objects of trials {_numbers(deleted)} were deleted: they count as "
                                    f"failed ({TRIAL_DELETED}, not against maxFailedTrials) and their results are lost")
        if len(records) < job.spec.budget.max_trials:
            self.ownership.announce_taken(body, trial_name(job.name, len(records)), self.cluster.emit_event)
        imported = self.warm_start.imported(body, job)
        engine = Engine(job.spec, records, study_name=f"{_namespace(body)}/{job.name}", started_at=started_at,
                        imported=imported.records)
        owners = {trial["spec"]["number"]: trial for trial in trials}
        trial_objects = TrialObjects(self.cluster, self.settings, engine, owners)
        driver = TrialDriver(engine, self._driver_settings(), trial_objects)
        pods = self.ownership.pods(body, owners, [pod for pod in self.cluster.list_pods(_namespace(body), job.name)
                                                  if not controlled_by_trial_resource(pod)])
        for trial in trials:
            record = records[trial["spec"]["number"]]
            if record.state != TrialState.RUNNING:
                continue
            pod_attempts = [pod_attempt(pod) for number, pod in pods.values() if number == record.number]
            attempts = max([trial_attempts(trial), *pod_attempts])
            driver.adopt(record, attempts, relaunch="started" if attempts == 0 else None)
        self.state = JobState(job=job, engine=engine, driver=driver, trials=trial_objects, imported=imported)
        log.info("%s/%s: rebuilt the study from %d trials (%d running)",
                 _namespace(body), job.name, len(records), driver.running)
        return self.state

    def _driver_settings(self) -> DriverSettings:
        """The operator reads metrics at every pass; pods get their own termination grace period when stopped."""
        settings = self.settings
        return DriverSettings(
            scrape_interval_seconds=0.0, stop_grace_seconds=None,
            metrics_unavailable_timeout_seconds=settings.metrics_unavailable_timeout_seconds,
            image_pull_timeout_seconds=settings.image_pull_timeout_seconds,
            unschedulable_timeout_seconds=settings.unschedulable_timeout_seconds,
            lost_pod_timeout_seconds=settings.lost_pod_timeout_seconds,
        )

    def _delete_stray_pods(
        self, body: dict[str, Any], state: JobState, pods: dict[str, dict[str, Any]], now: float
    ) -> None:
        """Delete running pods that no live attempt holds (a stopped trial's pod left by a crash, say), force-delete
        such pods stuck Terminating on a lost node, and delete finished pods past their retention. Only the job's
        own pods (controlled by its Trials): others with its labels are left alone."""
        held = state.driver.live_attempts()
        for name, (trial, pod) in self.ownership.pods(body, state.trials.owners, pods.values()).items():
            if held.get(trial) == pod_attempt(pod):
                continue
            if pod_finished(pod):
                if not pod["metadata"].get("deletionTimestamp") and self._retention_over(pod, now):
                    self.cluster.delete_pod(_namespace(body), name)
                continue
            if pod["metadata"].get("deletionTimestamp"):
                overdue = now - (epoch(pod["metadata"]["deletionTimestamp"]) or now)
                if overdue >= self.settings.lost_pod_timeout_seconds:
                    log.info("%s/%s: force-deleting pod %s, lost with its node", _namespace(body), state.job.name, name)
                    self.cluster.delete_pod(_namespace(body), name, grace_seconds=0)
                continue
            log.info("%s/%s: deleting stray pod %s", _namespace(body), state.job.name, name)
            self.cluster.delete_pod(_namespace(body), name)

    def _retention_over(self, pod: dict[str, Any], now: float) -> bool:
        """Whether a finished pod no attempt holds may go: a succeeded one at once (unless kept by the settings),
        a failed one once `failed_pod_retention_seconds` have passed since it ended."""
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            return self.settings.delete_succeeded_pods
        ended = pod_finished_at(pod)
        return ended is not None and now - ended >= self.settings.failed_pod_retention_seconds

def _refused_edit(body: Mapping[str, Any], accepted: Mapping[str, Any]) -> str | None:
    """A message naming the unsafe fields edited since the job was accepted, or None."""
    try:
        current = load_tuningjob(body).manifest["spec"]
    except SpecError:
        current = body.get("spec") or {}
    changed = [key for key in UNSAFE_FIELDS if current.get(key) != accepted.get(key)]
    if not changed:
        return None
    fields = ", ".join(f"spec.{key}" for key in changed)
    return (f"{fields} changed after the job started; the job goes on with the original values (trials of "
            f"different search spaces cannot share a study). Revert the edit, or create a new TuningJob.")


def _with_deleted_trials(records: list[TrialRecord], counted: int) -> list[TrialRecord]:
    """The records with a placeholder for each trial whose Trial object was deleted by hand.

    The study's trials are numbered without gaps; a missing Trial (a number below the highest one, or below
    `counted`, the trials the job's status counted last) becomes a Failed trial (`TrialDeleted`) with no
    parameters, so the job goes on instead of failing every rebuild, and a deleted trial is never run again.
    """
    by_number = {record.number: record for record in records}
    return [by_number.get(number) or TrialRecord(
        number=number, params={}, state=TrialState.FAILED, reason=TRIAL_DELETED,
        message="its Trial object was deleted; what it ran and measured is lost")
        for number in range(max(max(by_number, default=-1) + 1, counted))]


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _namespace(body: Mapping[str, Any]) -> str:
    return body["metadata"]["namespace"]
