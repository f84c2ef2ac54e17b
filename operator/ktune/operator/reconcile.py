"""One level-based pass over one TuningJob: compare what should run with what runs, act, write status.

A `JobReconciler` lives as long as its TuningJob is watched by this operator process and keeps the job's
engine between passes. Everything it needs to continue lives in the API (Trial objects, pods, the
job's annotations and status): a fresh reconciler after a restart rebuilds the same study from the
Trials, finds each running trial's pod, and creates nothing twice, because every name it creates is
deterministic (`<job>-<number>` for a Trial, `<job>-<number>-<attempt>` for a pod) and the API server
refuses a second object of the same name. A Trial's outcome is written before its pod is deleted.

Warm start: whenever the engine is (re)built, the succeeded trials of the jobs in `spec.warmStart.from`
are read from their Trial objects (their pods may be long gone) and imported (`ktune.engine.warm_start`).
Hours: `status.gpuHoursUsed`/`cpuHoursUsed` count each trial from its Trial's startTime (when its first
pod was created) to its finishTime, so the time a pod waits for a node counts too; they are written
with the other status changes, not on their own at every pass.
"""

import copy
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ktune import contract, metrics
from ktune.algorithms import load_tuningjob
from ktune.engine import JOB_STOPPED, Engine, FinishDecision, TrialRecord, TrialState
from ktune.engine.warm_start import ImportedTrials, WarmStartSource, import_trials
from ktune.operator import status as st
from ktune.operator.cluster import AlreadyExists, ApiError, Cluster
from ktune.operator.pod_policy import forbidden_fields
from ktune.operator.pods import pod_attempt, trial_name, trial_pod_manifest, trial_pod_name
from ktune.operator.settings import OperatorSettings
from ktune.operator.trials import epoch, record_from_trial, rfc3339, trial_attempts, trial_manifest, trial_status
from ktune.spec import SpecError, TuningJob

log = logging.getLogger(__name__)

ACCEPTED_SPEC_ANNOTATION = "ktune.dev/accepted-spec"
# Changing these after trials ran would mix trials of different studies: such edits are refused.
UNSAFE_FIELDS = ("objective", "objectives", "metrics", "parameters", "sampler", "pruner", "warmStart")
# A pod waiting with one of these reasons is retried or failed once `image_pull_timeout_seconds` passed.
STUCK_WAITING_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)

Scrape = Callable[[str, float], metrics.TrialMetrics]
QueryPrometheus = Callable[[str, str, int, str | None, float], metrics.TrialMetrics]


@dataclass
class LiveTrial:
    """What the operator tracks about a Running trial besides the engine's record."""

    trial: dict[str, Any]  # the Trial object (for its name and uid, the pods' owner)
    attempts: int = 0
    last_step: int | None = None
    metrics_silent_since: float | None = None  # when the current attempt's metrics last stopped answering


@dataclass
class JobState:
    """The job's engine and live trials, rebuilt from the API whenever in doubt."""

    job: TuningJob
    engine: Engine
    live: dict[int, LiveTrial] = field(default_factory=dict)
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
        self.written_status: dict[str, Any] | None = None

    # ---- the pass -------------------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any], now: float) -> None:
        """One pass. Any API error leaves the engine to be rebuilt from the API on the next pass."""
        try:
            self._reconcile(copy.deepcopy(dict(body)), now)
        except Exception:
            self.state = None
            raise

    def _reconcile(self, body: dict[str, Any], now: float) -> None:
        # This process is the status's only writer: its last write is newer than a body that lags behind.
        if self.written_status is not None:
            body["status"] = copy.deepcopy(self.written_status)
        previous = body.get("status") or {}
        job, refused = self._accepted_job(body, now)
        if job is None:
            return
        state = self._state(body, job, now)
        pods = {pod["metadata"]["name"]: pod for pod in self.cluster.list_pods(_namespace(body), job.name)}
        self._delete_stray_pods(body, state, pods, now)
        for number in sorted(state.live):
            self._observe(body, state, number, pods, now)
        decision = state.engine.stop_decision(now)
        if decision is not None and state.engine.counts()["running"]:
            self._stop_running(body, state, pods, decision, now)
            decision = state.engine.stop_decision(now) or decision
        if decision is None:
            self._launch(body, state, now)
        self._write_status(body, state, previous, decision, refused, now)

    # ---- the spec: validity and refused edits ----------------------------------------------------

    def _accepted_job(self, body: dict[str, Any], now: float) -> tuple[TuningJob | None, str | None]:
        """The job to run (its search space as first accepted) and why an edit was refused, if one was.

        On the first valid pass the search space is stored in an annotation; later passes run with it
        whatever the spec says now, so that a restarted operator keeps the study the trials belong to.
        """
        annotations = body["metadata"].get("annotations") or {}
        accepted_text = annotations.get(ACCEPTED_SPEC_ANNOTATION)
        if accepted_text is None:
            try:
                job = load_tuningjob(body)
            except SpecError as error:
                self._write_invalid(body, error.problems, now)
                return None, None
            if self._refused_by_policy(body, job, now):
                return None, None
            accepted = {key: job.manifest["spec"][key] for key in UNSAFE_FIELDS if key in job.manifest["spec"]}
            self.cluster.patch_job_annotations(
                _namespace(body), job.name, {ACCEPTED_SPEC_ANNOTATION: json.dumps(accepted, sort_keys=True)}
            )
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
        """Mark the job Invalid when the admin forbids what its trial template asks for."""
        problems = forbidden_fields(job.spec.trial.template) if self.settings.forbid_privileged_trials else []
        if problems:
            self._write_invalid(body, problems, now)
        return bool(problems)

    def _write_invalid(self, body: dict[str, Any], problems: list[str], now: float) -> None:
        previous = body.get("status") or {}
        now_text = rfc3339(now)
        generation = body["metadata"].get("generation")
        message = "invalid TuningJob:\n" + "\n".join(problems)
        conditions = previous.get("conditions") or []
        for type_, value in ((st.COND_INVALID, True), (st.COND_FAILED, True), (st.COND_RUNNING, False),
                             (st.COND_SUCCEEDED, False)):
            conditions = st.set_condition(conditions, type_, value, "InvalidSpec", message, generation, now_text)
        status = {"phase": st.FAILED, "conditions": conditions, "observedGeneration": generation,
                  "message": message}
        if previous.get("phase") != st.FAILED or not st.condition_status(previous.get("conditions") or [],
                                                                         st.COND_INVALID):
            self.cluster.emit_event(body, "Warning", "InvalidSpec", message)
        self._patch_status(body, status)
        self.state = None

    # ---- the engine and live trials ---------------------------------------------------------------

    def _state(self, body: dict[str, Any], job: TuningJob, now: float) -> JobState:
        if self.state is not None and self.state.job.spec == job.spec:
            self.state.job = job
            return self.state
        started_at = epoch((body.get("status") or {}).get("startTime")) or now
        trials = sorted(self.cluster.list_trials(_namespace(body), job.name), key=lambda t: t["spec"]["number"])
        records = [record_from_trial(trial) for trial in trials]
        imported = self._warm_start(body, job)
        engine = Engine(job.spec, records, study_name=f"{_namespace(body)}/{job.name}", started_at=started_at,
                        imported=imported.records)
        pods = self.cluster.list_pods(_namespace(body), job.name)
        live: dict[int, LiveTrial] = {}
        for trial, record in zip(trials, records, strict=True):
            if record.state != TrialState.RUNNING:
                continue
            pod_attempts = [pod_attempt(pod) for pod in pods if _pod_trial(pod) == record.number]
            live[record.number] = LiveTrial(
                trial=trial,
                attempts=max([trial_attempts(trial), *pod_attempts]),
                last_step=max(record.intermediate) if record.intermediate else None,
            )
        self.state = JobState(job=job, engine=engine, live=live, imported=imported)
        log.info("%s/%s: rebuilt the study from %d trials (%d running)",
                 _namespace(body), job.name, len(records), len(live))
        return self.state

    def _warm_start(self, body: dict[str, Any], job: TuningJob) -> ImportedTrials:
        """The trials of spec.warmStart.from's jobs; a missing or incompatible job is announced once."""
        sources: list[WarmStartSource] = []
        missing: list[str] = []
        for ref in job.spec.warm_start.sources:
            namespace = ref.namespace or _namespace(body)
            try:
                source = self.cluster.get_job(namespace, ref.name)
            except ApiError as error:
                if error.status != 403:
                    raise
                missing.append(f"{namespace}/{ref.name}: the operator may not read it ({error})")
                continue
            if source is None:
                missing.append(f"{namespace}/{ref.name}: no such TuningJob")
                continue
            try:
                parameters = load_tuningjob(source).spec.parameters
            except SpecError:
                parameters = None  # judged trial by trial
            records = [record_from_trial(trial) for trial in self.cluster.list_trials(namespace, ref.name)]
            sources.append(WarmStartSource(f"{namespace}/{ref.name}", parameters, records))
        imported = import_trials(job.spec, sources)
        if (body.get("status") or {}).get("importedTrials") is None:
            for message in missing + imported.incompatible:
                self.cluster.emit_event(body, "Warning", "WarmStartSkipped", message)
            if job.spec.warm_start.sources:
                self.cluster.emit_event(body, "Normal", "WarmStarted",
                                        f"imported {len(imported.records)} trials ({imported.dropped} dropped: "
                                        "outside this job's space or without its objective)")
        return imported

    def _delete_stray_pods(
        self, body: dict[str, Any], state: JobState, pods: dict[str, dict[str, Any]], now: float
    ) -> None:
        """Delete running pods that no live attempt owns (a stopped trial's pod left by a crash, say), and
        force-delete such pods stuck Terminating on a lost node."""
        for name, pod in pods.items():
            if _pod_finished(pod):
                continue
            live = state.live.get(_pod_trial(pod))
            if pod["metadata"].get("deletionTimestamp"):
                if (live is None or pod_attempt(pod) != live.attempts) and self._lost_reason(pod, now) is not None:
                    log.info("%s/%s: force-deleting pod %s, lost with its node", _namespace(body), state.job.name, name)
                    self.cluster.delete_pod(_namespace(body), name, grace_seconds=0)
                continue
            if live is None or pod_attempt(pod) != live.attempts:
                log.info("%s/%s: deleting stray pod %s", _namespace(body), state.job.name, name)
                self.cluster.delete_pod(_namespace(body), name)

    # ---- one running trial --------------------------------------------------------------------------

    def _observe(
        self, body: dict[str, Any], state: JobState, number: int, pods: dict[str, dict[str, Any]], now: float
    ) -> None:
        live = state.live[number]
        if live.attempts == 0:
            self._start_attempt(body, state, number, 1, now)
            return
        pod = pods.get(trial_pod_name(state.job.name, number, live.attempts))
        if pod is None:
            self._attempt_failed(body, state, number, "PodDeleted", "the trial's pod was deleted", now)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            self._attempt_succeeded(body, state, number, pod, now)
        elif phase == "Failed":
            reason, message = _failure_of(pod)
            self._attempt_failed(body, state, number, reason, message, now)
        elif pod["metadata"].get("deletionTimestamp"):
            lost = self._lost_reason(pod, now)
            if lost is not None:
                self.cluster.delete_pod(_namespace(body), pod["metadata"]["name"], grace_seconds=0)
                self._attempt_failed(body, state, number, *lost, now)
        elif phase == "Running":
            self._read_metrics(body, state, number, pod, now)
        else:
            stuck = self._stuck_reason(pod, now)
            if stuck is not None:
                self.cluster.delete_pod(_namespace(body), pod["metadata"]["name"])
                self._attempt_failed(body, state, number, *stuck, now)

    def _start_attempt(self, body: dict[str, Any], state: JobState, number: int, attempt: int, now: float) -> None:
        live = state.live[number]
        record = state.engine.record(number)
        trial = state.job.spec.trial
        pod = trial_pod_manifest(trial.template, state.job.name, number, record.params, attempt,
                                 trial.metrics_port, live.trial)
        try:
            self.cluster.create_pod(_namespace(body), pod)
        except AlreadyExists:
            log.info("%s: pod %s exists already", state.job.name, pod["metadata"]["name"])
        except ApiError as error:
            if error.status != 422:
                raise
            # The API server refuses the pod itself (a bad template): no retry can help.
            self._finish_trial(body, state, state.engine.tell_failed(number, "PodRejected", str(error), now=now))
            return
        live.attempts = attempt
        live.metrics_silent_since = None
        self._write_trial(body, state, number)

    def _attempt_succeeded(
        self, body: dict[str, Any], state: JobState, number: int, pod: dict[str, Any], now: float
    ) -> None:
        text = _termination_message(pod)
        try:
            result = metrics.parse_result(text) if text.strip() else {}
        except metrics.MetricsError as error:
            record = state.engine.tell_failed(number, "InvalidResult", str(error), now=now)
        else:
            record = state.engine.tell_succeeded(number, result, now=now)
        self._finish_trial(body, state, record)

    def _attempt_failed(
        self, body: dict[str, Any], state: JobState, number: int, reason: str, message: str, now: float
    ) -> None:
        live = state.live[number]
        if live.attempts <= state.job.spec.trial.retries:
            self.cluster.emit_event(
                body, "Warning", "TrialRetried",
                f"{trial_name(state.job.name, number)} attempt {live.attempts} failed ({reason}); "
                f"starting attempt {live.attempts + 1}",
            )
            self._start_attempt(body, state, number, live.attempts + 1, now)
            return
        record = state.engine.tell_failed(number, reason, message, now=now)
        self._finish_trial(body, state, record)

    def _read_metrics(
        self, body: dict[str, Any], state: JobState, number: int, pod: dict[str, Any], now: float
    ) -> None:
        job = state.job
        source = job.spec.metrics_source
        timeout = self.settings.scrape_timeout_seconds
        try:
            if source.type == "prometheus":
                reading = self.query_prometheus(source.url, job.name, number, _namespace(body), timeout)
            else:
                pod_ip = (pod.get("status") or {}).get("podIP")
                if not pod_ip:
                    self._metrics_unanswered(body, state, number, pod, "the pod has no IP", now)
                    return
                reading = self.scrape(metrics.metrics_url(pod_ip, job.spec.trial.metrics_port), timeout)
        except metrics.MetricsError as error:
            log.debug("%s: trial %d: %s", job.name, number, error)
            self._metrics_unanswered(body, state, number, pod, str(error), now)
            return
        live = state.live[number]
        live.metrics_silent_since = None
        if reading.step is None or (live.last_step is not None and reading.step <= live.last_step):
            return
        live.last_step = reading.step
        if state.engine.report(number, reading.step, reading.values):
            record = state.engine.tell_pruned(number, now=now)
            self._finish_trial(body, state, record)
        else:
            self._write_trial(body, state, number)

    def _metrics_unanswered(
        self, body: dict[str, Any], state: JobState, number: int, pod: dict[str, Any], why: str, now: float
    ) -> None:
        """Fail the attempt with MetricsUnavailable once its metrics stayed silent for the configured timeout."""
        live = state.live[number]
        if live.metrics_silent_since is None:
            live.metrics_silent_since = now
            return
        silent = now - live.metrics_silent_since
        if silent < self.settings.metrics_unavailable_timeout_seconds:
            return
        self.cluster.delete_pod(_namespace(body), pod["metadata"]["name"])
        message = f"the trial's metrics did not answer for {silent:.0f} s (last error: {why})"
        self._attempt_failed(body, state, number, "MetricsUnavailable", message, now)

    def _lost_reason(self, pod: dict[str, Any], now: float) -> tuple[str, str] | None:
        """(reason, message) when a deleted pod stays Terminating long past its grace period: no node confirms
        the deletion because the node is gone, so the attempt would otherwise wait forever."""
        grace_ends = epoch(pod["metadata"]["deletionTimestamp"]) or now
        overdue = now - grace_ends
        if overdue < self.settings.lost_pod_timeout_seconds:
            return None
        node = (pod.get("spec") or {}).get("nodeName") or "no node"
        return "NodeLost", (f"pod {pod['metadata']['name']} on {node} stayed Terminating {overdue:.0f} s past its "
                            f"grace period (its node stopped answering); force-deleted it")

    def _stuck_reason(self, pod: dict[str, Any], now: float) -> tuple[str, str] | None:
        """(reason, message) when a pending pod has waited too long for its image or for a node."""
        age = now - (epoch(pod["metadata"].get("creationTimestamp")) or now)
        pod_status = pod.get("status") or {}
        for container in pod_status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_WAITING_REASONS and age >= self.settings.image_pull_timeout_seconds:
                return waiting["reason"], waiting.get("message") or ""
        for condition in pod_status.get("conditions") or []:
            if (condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable"
                    and age >= self.settings.unschedulable_timeout_seconds):
                return "Unschedulable", condition.get("message") or ""
        return None

    def _finish_trial(self, body: dict[str, Any], state: JobState, record: TrialRecord) -> None:
        """Write a finished trial's outcome, then remove its pod if it still runs, then announce it."""
        number = record.number
        live = state.live[number]
        self._write_trial(body, state, number)
        del state.live[number]
        pod_name = trial_pod_name(state.job.name, number, live.attempts)
        if record.state == TrialState.PRUNED:
            self.cluster.delete_pod(_namespace(body), pod_name)
        name = trial_name(state.job.name, number)
        if record.state == TrialState.SUCCEEDED:
            values = ", ".join(f"{o.metric}={v:.6g}" for o, v in zip(state.job.spec.objectives, record.values or [],
                                                                     strict=False))
            self.cluster.emit_event(body, "Normal", "TrialSucceeded", f"{name} succeeded: {values}")
        elif record.state == TrialState.PRUNED:
            self.cluster.emit_event(body, "Normal", "TrialPruned",
                                    f"{name} pruned at step {live.last_step}; its pod {pod_name} was deleted")
        else:
            self.cluster.emit_event(body, "Warning", "TrialFailed",
                                    f"{name} failed: {record.reason}: {(record.message or '')[-300:]}")

    def _write_trial(self, body: dict[str, Any], state: JobState, number: int) -> None:
        live = state.live[number]
        pod_name = trial_pod_name(state.job.name, number, live.attempts) if live.attempts else None
        status = trial_status(state.engine.record(number), live.attempts, pod_name,
                              self.settings.intermediate_values_kept)
        self.cluster.patch_trial_status(_namespace(body), trial_name(state.job.name, number), status)

    # ---- starting and stopping trials ---------------------------------------------------------------

    def _launch(self, body: dict[str, Any], state: JobState, now: float) -> None:
        for _ in range(state.engine.launchable(state.engine.counts()["running"], now)):
            record = state.engine.ask(now)
            try:
                trial = self.cluster.create_trial(_namespace(body), trial_manifest(body, record.number, record.params))
            except AlreadyExists:
                # Someone else (another operator) made this trial: start over from what the API holds.
                log.warning("%s: trial %d exists already; rebuilding from the API", state.job.name, record.number)
                self.state = None
                return
            state.live[record.number] = LiveTrial(trial=trial)
            self._write_trial(body, state, record.number)
            self.cluster.emit_event(
                body, "Normal", "TrialStarted",
                f"{trial_name(state.job.name, record.number)} started with "
                f"{json.dumps(record.params, sort_keys=True)}",
            )
            self._start_attempt(body, state, record.number, 1, now)

    def _stop_running(
        self, body: dict[str, Any], state: JobState, pods: dict[str, dict[str, Any]], decision: FinishDecision,
        now: float,
    ) -> None:
        for number in sorted(state.live):
            record = state.engine.tell_failed(number, JOB_STOPPED, decision.message, now=now)
            live = state.live.pop(number)
            self.cluster.patch_trial_status(
                _namespace(body), trial_name(state.job.name, number),
                trial_status(record, live.attempts, trial_pod_name(state.job.name, number, live.attempts),
                             self.settings.intermediate_values_kept),
            )
            pod = pods.get(trial_pod_name(state.job.name, number, live.attempts))
            if pod is not None and not _pod_finished(pod):
                self.cluster.delete_pod(_namespace(body), pod["metadata"]["name"])

    # ---- the job's status ----------------------------------------------------------------------------

    def _write_status(
        self, body: dict[str, Any], state: JobState, previous: Mapping[str, Any], decision: FinishDecision | None,
        refused: str | None, now: float,
    ) -> None:
        engine, job = state.engine, state.job
        generation = body["metadata"].get("generation")
        now_text = rfc3339(now)
        counts = st.trial_counts(engine.counts(), job.spec.budget.max_trials)
        best = st.trial_summary(job.name, engine.best_trial) if not job.spec.multi_objective and \
            engine.best_trial is not None else None
        front = None
        if job.spec.multi_objective:
            front = [st.trial_summary(job.name, record, with_metrics=False)
                     for record in engine.pareto_front[: self.settings.pareto_front_kept]]
        conditions = previous.get("conditions") or []
        conditions = st.set_condition(conditions, st.COND_INVALID, False, "SpecValid", "", generation, now_text)
        if refused is not None:
            conditions = st.set_condition(conditions, st.COND_SPEC_CHANGE_REFUSED, True, "UnsafeSpecChange",
                                          refused, generation, now_text)
        elif any(c.get("type") == st.COND_SPEC_CHANGE_REFUSED for c in conditions):
            conditions = st.set_condition(conditions, st.COND_SPEC_CHANGE_REFUSED, False, "SpecUnchanged", "",
                                          generation, now_text)
        if decision is None:
            phase = st.RUNNING if counts["total"] else st.PENDING
            message = st.progress_message(counts, best, job.spec.objectives[0].metric)
            for type_, value, reason in ((st.COND_RUNNING, True, "TrialsRunning"),
                                         (st.COND_SUCCEEDED, False, "NotFinished"),
                                         (st.COND_FAILED, False, "NotFinished")):
                conditions = st.set_condition(conditions, type_, value, reason, message, generation, now_text)
            completion = None
        else:
            phase = st.SUCCEEDED if decision.succeeded else st.FAILED
            message = decision.message
            for type_, value in ((st.COND_RUNNING, False), (st.COND_SUCCEEDED, decision.succeeded),
                                 (st.COND_FAILED, not decision.succeeded)):
                conditions = st.set_condition(conditions, type_, value, decision.reason, message, generation,
                                              now_text)
            completion = previous.get("completionTime") if previous.get("phase") == phase else now_text
            if previous.get("phase") != phase:
                self.cluster.emit_event(body, "Normal" if decision.succeeded else "Warning",
                                        "TuningJobSucceeded" if decision.succeeded else "TuningJobFailed",
                                        f"{decision.reason}: {message}")
        status = {
            "phase": phase,
            "conditions": conditions,
            "observedGeneration": generation,
            "trialCounts": counts,
            "trials": st.trials_progress(counts),
            "bestTrial": best,
            "paretoFront": front,
            "importedTrials": engine.imported_count,
            "importedTrialsDropped": state.imported.dropped,
            "gpuHoursUsed": round(engine.budget_usage(now).gpu_hours, 6),
            "cpuHoursUsed": round(engine.budget_usage(now).cpu_hours, 6),
            "startTime": previous.get("startTime") or now_text,
            "completionTime": completion,
            "message": message,
        }
        self._patch_status(body, status)

    def _patch_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch /status when it changed; conditions' times alone do not count as a change."""
        if _comparable(status) == _comparable(body.get("status") or {}) or status == self.written_status:
            return
        self.cluster.patch_job_status(_namespace(body), body["metadata"]["name"], status)
        self.written_status = status


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


# Hours grow at every pass while trials run: they ride along with other changes instead of forcing a patch.
_GROWING_FIELDS = ("gpuHoursUsed", "cpuHoursUsed")


def _comparable(status: Mapping[str, Any]) -> Any:
    """The status without times of conditions, hours used and empty fields (merge-patch nulls remove them)."""
    cleaned = {key: value for key, value in status.items() if value is not None and key not in _GROWING_FIELDS}
    cleaned["conditions"] = [
        {key: value for key, value in condition.items() if key != "lastTransitionTime"}
        for condition in status.get("conditions") or []
    ]
    return json.loads(json.dumps(cleaned, sort_keys=True))


def _namespace(body: Mapping[str, Any]) -> str:
    return body["metadata"]["namespace"]


def _pod_trial(pod: Mapping[str, Any]) -> int | None:
    text = (pod["metadata"].get("labels") or {}).get(contract.LABEL_TRIAL, "")
    return int(text) if text.isdigit() else None


def _pod_finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _trainer_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first container's status: the trainer is the template's first container."""
    first = pod["spec"]["containers"][0]["name"]
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == first:
            return container
    return {}


def _termination_message(pod: Mapping[str, Any]) -> str:
    terminated = (_trainer_status(pod).get("state") or {}).get("terminated") or {}
    return terminated.get("message") or ""


def _failure_of(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(reason, message) of a failed pod: the trainer container's reason (OOMKilled, Error), else the pod's."""
    terminated = (_trainer_status(pod).get("state") or {}).get("terminated") or {}
    pod_status = pod.get("status") or {}
    reason = terminated.get("reason") or pod_status.get("reason") or "Error"
    message = terminated.get("message") or pod_status.get("message") or ""
    if terminated.get("exitCode") is not None:
        message = f"exit code {terminated['exitCode']}" + (f": {message}" if message else "")
    return reason, message
