"""What the trial lifecycle tells the operator, kept in the API: Trial objects and the job's Events.

A Trial object is made before its first pod (so every pod has its owner) and its status is written
whenever the driver learns something; a finished trial's outcome is written before its pod is
stopped, so a restarted operator never loses an outcome to a crash between the two. Each status write
carries the resourceVersion of the Trial as this process last saw it, so that an operator that is no
longer the leader (or lagging behind a write of another) cannot set a Trial back.
"""

import json
import logging
from typing import Any

from ktune import contract
from ktune.engine import JOB_STOPPED, Engine, TrialRecord, TrialState
from ktune.operator.cluster import AlreadyExists, Cluster
from ktune.operator.pods import trial_name, trial_pod_name
from ktune.operator.settings import OperatorSettings
from ktune.operator.trials import POD_KIND, AttemptShape, trial_manifest, trial_status
from ktune.trials.backend import HowStarted

log = logging.getLogger(__name__)


class TrialObjects:
    """One job's Trial objects (the owners of its pods) and the Events about its trials."""

    def __init__(self, cluster: Cluster, settings: OperatorSettings, engine: Engine,
                 owners: dict[int, dict[str, Any]]) -> None:
        self.cluster = cluster
        self.settings = settings
        self.engine = engine
        self.owners = owners
        """Trial number -> its Trial object (the owner of its pods)."""
        self.body: dict[str, Any] = {}
        """The TuningJob of the current pass (Events are about it; new Trials belong to it)."""
        self.waiting: dict[int, tuple[str, str]] = {}
        """Trial number -> (reason, message) while its attempt waits for a queue to admit it (shown Pending)."""

    @property
    def job_name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    def trial_created(self, record: TrialRecord) -> bool:
        try:
            manifest = trial_manifest(self.body, record.number, record.params, record.started_at, record.system_attrs)
            trial = self.cluster.create_trial(self.namespace, manifest)
        except AlreadyExists:
            # Someone else (another operator) made this trial: start over from what the API holds.
            log.warning("%s: trial %d exists already; rebuilding from the API", self.job_name, record.number)
            return False
        self.owners[record.number] = trial
        self._write(record, 0)
        self._emit(record.number, "Normal", "TrialStarted",
                   f"{trial_name(self.job_name, record.number)} started with "
                   f"{json.dumps(record.params, sort_keys=True)}")
        return True

    def attempt_started(self, record: TrialRecord, attempt: int, how: HowStarted) -> None:
        self._write(record, attempt)

    def attempt_retried(self, number: int, attempt: int, reason: str, message: str) -> None:
        self._emit(number, "Warning", "TrialRetried",
                   f"{trial_name(self.job_name, number)} attempt {attempt} failed ({reason}); "
                   f"starting attempt {attempt + 1}")

    def trial_reported(self, number: int, attempt: int, step: int) -> None:
        self._write(self.engine.record(number), attempt)

    def attempt_waiting(self, record: TrialRecord, attempt: int, waiting: tuple[str, str] | None) -> None:
        if waiting is None:
            self.waiting.pop(record.number, None)
        else:
            self.waiting[record.number] = waiting
        self._write(record, attempt)

    def trial_finished(self, record: TrialRecord, attempt: int, last_step: int | None) -> None:
        self.waiting.pop(record.number, None)
        self._write(record, attempt)
        name = trial_name(self.job_name, record.number)
        if record.state == TrialState.SUCCEEDED:
            values = ", ".join(f"{o.metric}={v:.6g}" for o, v in zip(self.engine.spec.objectives, record.values or [],
                                                                     strict=False))
            self._emit(record.number, "Normal", "TrialSucceeded", f"{name} succeeded: {values}")
        elif record.state == TrialState.PRUNED:
            shape = AttemptShape.of(self.engine.spec.trial)
            what = "pod" if shape.kind == POD_KIND else f"{shape.kind} (with its {shape.pods} pods)"
            self._emit(record.number, "Normal", "TrialPruned",
                       f"{name} pruned at step {last_step}; its {what} "
                       f"{trial_pod_name(self.job_name, record.number, attempt)} was deleted")
        elif record.reason != JOB_STOPPED:  # the job's own Event says why it stopped its trials
            self._emit(record.number, "Warning", "TrialFailed",
                       f"{name} failed: {record.reason}: {(record.message or '')[-300:]}")

    def _emit(self, number: int, type_: str, reason: str, message: str) -> None:
        """The same Event about the job (`kubectl describe tuningjob`) and about its Trial (`describe trial`)."""
        self.cluster.emit_event(self.body, type_, reason, message)
        trial = self.owners.get(number)
        if trial is not None:  # a LIST's items may lack apiVersion and kind
            self.cluster.emit_event({**trial, "apiVersion": f"{contract.API_GROUP}/{contract.API_VERSION}",
                                     "kind": contract.TRIAL_KIND}, type_, reason, message)

    def _write(self, record: TrialRecord, attempts: int) -> None:
        """Write the Trial's status if the Trial is still as this process last read or wrote it (Conflict
        otherwise: another operator wrote it, and the pass rebuilds from the API instead of overwriting it)."""
        pod_name = trial_pod_name(self.job_name, record.number, attempts) if attempts else None
        status = trial_status(record, attempts, pod_name, self.settings.intermediate_values_kept,
                              self.waiting.get(record.number), AttemptShape.of(self.engine.spec.trial))
        version = self.owners[record.number]["metadata"].get("resourceVersion")
        self.owners[record.number] = self.cluster.patch_trial_status(
            self.namespace, trial_name(self.job_name, record.number), status, version)
