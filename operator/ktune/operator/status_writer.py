"""Writing a TuningJob's status: phase, conditions (Kubernetes API conventions), counts, best trial, hours.

One writer per job, in the operator process that reconciles it: it remembers what it last wrote, so a pass
whose body lags behind its own last write neither rewrites nor goes backwards.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ktune.engine import Engine, FinishDecision
from ktune.operator.cluster import Cluster
from ktune.operator.settings import OperatorSettings
from ktune.operator.status import (
    COND_FAILED,
    COND_INVALID,
    COND_READY,
    COND_RUNNING,
    COND_SPEC_CHANGE_REFUSED,
    COND_STALLED,
    COND_SUCCEEDED,
    COND_SUSPENDED,
    COND_TRIALS_WAITING,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    SUSPENDED,
    condition_status,
    objective_summary,
    progress_message,
    set_condition,
    trial_counts,
    trial_summary,
    trials_progress,
)
from ktune.operator.trials import rfc3339
from ktune.operator.warm_start_sources import WARM_START_FIELD
from ktune.spec import TuningJob

MESSAGE_LIMIT = 1024  # of a condition's message: the API server's own words can be long
INVALID_MESSAGE_LIMIT = 8192  # the CRD's cap on status.message and a condition's message
# Where the search space as first accepted is kept: in status, which a job's author cannot write (only the
# /status subresource can, which author roles do not grant), and which has no 256 KiB annotation cap.
ACCEPTED_SPEC_FIELD = "acceptedSpec"


INVALID_SPEC = "InvalidSpec"
"""The Invalid condition's reason when the spec has problems."""
MISSING_API = "MissingAPI"
"""The Invalid condition's reason when the cluster does not serve the trial resource's kind (no training-operator)."""


@dataclass(frozen=True)
class JobProgress:
    """What the status of a valid job reports."""

    job: TuningJob
    engine: Engine
    deferred: Mapping[int, tuple[str, str]]
    """Trials whose launch is put off: number -> (reason, message)."""
    imported_dropped: int
    accepted_spec: str | None
    warm_start: str | None = None
    """status.warmStartTrials as written when the job was accepted (`ktune.operator.warm_start_sources`)."""


class StatusWriter:
    """Writes one TuningJob's status through the /status subresource, only when it changed."""

    def __init__(self, cluster: Cluster, settings: OperatorSettings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.written: dict[str, Any] | None = None
        """The status this process last wrote: newer than a body that lags behind it."""

    def write_invalid(self, body: dict[str, Any], problems: list[str], now: float, reason: str = INVALID_SPEC) -> None:
        """The status of a job that cannot run: Failed, with the Invalid condition listing the problems; `reason`
        is the conditions' and the Event's (MISSING_API: the cluster does not serve the trial resource's kind)."""
        previous = body.get("status") or {}
        now_text = rfc3339(now)
        generation = body["metadata"].get("generation")
        message = invalid_message(problems)
        conditions = previous.get("conditions") or []
        for type_, value in ((COND_INVALID, True), (COND_FAILED, True), (COND_RUNNING, False),
                             (COND_SUCCEEDED, False), (COND_READY, False), (COND_STALLED, True)):
            conditions = set_condition(conditions, type_, value, reason, message, generation, now_text)
        status = {"phase": FAILED, "conditions": conditions, "observedGeneration": generation,
                  "message": message}
        if previous.get("phase") != FAILED or not condition_status(previous.get("conditions") or [],
                                                                         COND_INVALID):
            self.cluster.emit_event(body, "Warning", reason, message)
        self.patch(body, status)

    def write_progress(
        self, body: dict[str, Any], progress: JobProgress, previous: Mapping[str, Any],
        decision: FinishDecision | None, refused: str | None, now: float,
    ) -> None:
        """The status of a valid job: phase, conditions, counts, best trial, hours; Events when it finishes."""
        engine, job = progress.engine, progress.job
        generation = body["metadata"].get("generation")
        now_text = rfc3339(now)
        counts = trial_counts(engine.counts(), job.spec.budget.max_trials)
        best = trial_summary(job.name, engine.best_trial) if not job.spec.multi_objective and \
            engine.best_trial is not None else None
        front = None
        if job.spec.multi_objective:
            front = [trial_summary(job.name, record, with_metrics=False)
                     for record in engine.pareto_front[: self.settings.pareto_front_kept]]
        conditions = previous.get("conditions") or []
        conditions = set_condition(conditions, COND_INVALID, False, "SpecValid", "", generation, now_text)
        if refused is not None:
            conditions = set_condition(conditions, COND_SPEC_CHANGE_REFUSED, True, "UnsafeSpecChange",
                                       refused, generation, now_text)
        elif any(c.get("type") == COND_SPEC_CHANGE_REFUSED for c in conditions):
            conditions = set_condition(conditions, COND_SPEC_CHANGE_REFUSED, False, "SpecUnchanged", "",
                                       generation, now_text)
        conditions = self._waiting_condition(body, progress.deferred, conditions, generation, now_text)
        if decision is None:
            phase = SUSPENDED if job.spec.suspend else RUNNING if counts["total"] else PENDING
            message = progress_message(counts, best, job.spec.objectives[0].metric)
            if job.spec.suspend:
                message = f"suspended (spec.suspend), no new trial starts; {message}"
            for type_, value, reason in ((COND_RUNNING, not job.spec.suspend,
                                          "JobSuspended" if job.spec.suspend else "TrialsRunning"),
                                         (COND_SUCCEEDED, False, "NotFinished"),
                                         (COND_FAILED, False, "NotFinished"),
                                         (COND_READY, False, "JobSuspended" if job.spec.suspend else "NotFinished"),
                                         (COND_STALLED, False, "NotFinished")):
                conditions = set_condition(conditions, type_, value, reason, message, generation, now_text)
            conditions = self._suspended_condition(body, conditions, job.spec.suspend, generation, now_text)
            completion = None
        else:
            phase = SUCCEEDED if decision.succeeded else FAILED
            message = decision.message
            for type_, value in ((COND_RUNNING, False), (COND_SUCCEEDED, decision.succeeded),
                                 (COND_FAILED, not decision.succeeded), (COND_READY, decision.succeeded),
                                 (COND_STALLED, not decision.succeeded)):
                conditions = set_condition(conditions, type_, value, decision.reason, message, generation,
                                              now_text)
            completion = previous.get("completionTime") if previous.get("phase") == phase else now_text
            if previous.get("phase") != phase:
                self.cluster.emit_event(body, "Normal" if decision.succeeded else "Warning",
                                        "TuningJobSucceeded" if decision.succeeded else "TuningJobFailed",
                                        f"{decision.reason}: {message}")
        status = {
            "phase": phase,
            "objective": objective_summary(job.spec.objectives),
            "conditions": conditions,
            "observedGeneration": generation,
            "trialCounts": counts,
            "trials": trials_progress(counts),
            "bestTrial": best,
            "paretoFront": front,
            "importedTrials": engine.imported_count,
            "importedTrialsDropped": progress.imported_dropped,
            "gpuHoursUsed": round(engine.budget_usage(now).gpu_hours, 6),
            "cpuHoursUsed": round(engine.budget_usage(now).cpu_hours, 6),
            "startTime": previous.get("startTime") or now_text,
            "completionTime": completion,
            "message": message,
            ACCEPTED_SPEC_FIELD: progress.accepted_spec,
            WARM_START_FIELD: progress.warm_start,
        }
        self.patch(body, status)

    def _suspended_condition(self, body: dict[str, Any], conditions: list[dict[str, Any]], suspended: bool,
                             generation: int | None, now_text: str) -> list[dict[str, Any]]:
        """Suspended: True while spec.suspend is; an Event when the job is suspended or resumed."""
        was = condition_status(conditions, COND_SUSPENDED)
        if suspended != was and (suspended or any(c.get("type") == COND_SUSPENDED for c in conditions)):
            self.cluster.emit_event(body, "Normal", "JobSuspended" if suspended else "JobResumed",
                                    "spec.suspend is true: no new trial starts" if suspended
                                    else "spec.suspend is false: trials start again")
        if not suspended and not was:
            return conditions
        return set_condition(conditions, COND_SUSPENDED, suspended, "JobSuspended" if suspended else "JobResumed",
                             "", generation, now_text)

    def _waiting_condition(self, body: dict[str, Any], waiting: Mapping[int, tuple[str, str]],
                           conditions: list[dict[str, Any]], generation: int | None,
                           now_text: str) -> list[dict[str, Any]]:
        """TrialsWaiting: True (with an Event when it turns so) while a launch is put off, e.g. by a quota."""
        was_waiting = condition_status(conditions, COND_TRIALS_WAITING)
        if waiting:
            number = min(waiting)
            reason, message = waiting[number]
            text = f"{len(waiting)} trial(s) waiting to start; trial {number}: {message}"[:MESSAGE_LIMIT]
            if not was_waiting:
                self.cluster.emit_event(body, "Warning", COND_TRIALS_WAITING, text)
            return set_condition(conditions, COND_TRIALS_WAITING, True, reason, text, generation, now_text)
        if any(c.get("type") == COND_TRIALS_WAITING for c in conditions):
            return set_condition(conditions, COND_TRIALS_WAITING, False, "TrialsStarted", "", generation, now_text)
        return conditions

    def patch(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch /status when it changed; conditions' times alone do not count as a change."""
        if _comparable(status) == _comparable(body.get("status") or {}) or status == self.written:
            return
        self.cluster.patch_job_status(body["metadata"]["namespace"], body["metadata"]["name"], status)
        self.written = status


def invalid_message(problems: list[str]) -> str:
    """The Invalid condition's message: every problem, cut to fit the CRD's cap with a marker saying so."""
    message = "invalid TuningJob:\n" + "\n".join(problems)
    if len(message) <= INVALID_MESSAGE_LIMIT:
        return message
    marker = f"\n... (cut at {INVALID_MESSAGE_LIMIT} characters; `ktune validate FILE` lists every problem)"
    return message[: INVALID_MESSAGE_LIMIT - len(marker)] + marker


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
