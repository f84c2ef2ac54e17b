"""Warm start on a cluster: the trials of `spec.warmStart.from` are read once, when the job is first accepted,
and kept in the job's status, so that every later rebuild imports exactly the same ones.

Why once: a rebuild happens at every operator restart and after every API error. Reading the sources again
each time would let the imported set change under a running job (a source deleted, or still running and adding
trials), and with it the study and the next suggestions.

Where they are kept: `status.warmStartTrials`, compact JSON written by the operator through the /status
subresource (which job authors cannot write, as for `status.acceptedSpec`). It holds only what the study uses,
each imported trial's parameter values and objective values, and is bounded: at most `TRIALS_KEPT` trials and
`TEXT_LIMIT` characters (the CRD's maxLength of the field), far below etcd's 1.5 MiB object limit; trials past
the cap (the last ones in import order: sources as listed, each source's trials by number) are counted in
`status.importedTrialsDropped`. A separate object (a ConfigMap the job owns) would have needed RBAC on
ConfigMaps, which the operator has none of. Only Trials the source job owns (by UID) are read.

Who may read what. Without a check, `spec.warmStart.from` would let anyone who can name a TuningJob in another
namespace read its results with the operator's cluster-wide rights. The admission policy (`ktune.operator.
permissions`) refuses a job whose author may not get TuningJobs and list Trials in a source's namespace. The
operator cannot know a job's author, so it reads other namespaces only when its admin turns on
`cross_namespace_warm_start`, which the admin does together with that policy; otherwise a job naming another
namespace is marked Invalid and nothing is read. A source skipped in another namespace gets the same message
whatever the cause (missing, unreadable by the operator, incompatible), naming only what the author wrote.
"""

import json
import logging
from collections.abc import Mapping
from typing import Any

from ktune.algorithms import load_tuningjob
from ktune.engine import ImportedTrials, TrialRecord, TrialState, WarmStartSource, import_trials
from ktune.engine.warm_start import incompatibility
from ktune.operator.cluster import ApiError, Cluster
from ktune.operator.settings import OperatorSettings
from ktune.operator.trials import record_from_trial
from ktune.spec import JobSpec, Parameter, SpecError, TuningJob

log = logging.getLogger(__name__)

WARM_START_FIELD = "warmStartTrials"
"""The status field holding the imported trials, written once."""
TRIALS_KEPT = 1000
"""At most this many imported trials are kept (and imported)."""
TEXT_LIMIT = 256 * 1024
"""At most this many characters of `status.warmStartTrials` (long categorical values take more room)."""


def cross_namespace_problems(job: TuningJob, namespace: str, settings: OperatorSettings) -> list[str]:
    """Why the job may not run here: it names sources in other namespaces, which this operator does not read."""
    if settings.cross_namespace_warm_start:
        return []
    return [f"spec.warmStart.from[{index}]: {ref.namespace}/{ref.name} is in another namespace, and this operator "
            "reads warm-start sources in the job's own namespace only; remove it, or ask an admin to turn on the "
            "operator setting cross_namespace_warm_start (chart settings.crossNamespaceWarmStart) together with "
            "the admission policy that checks the author may read TuningJobs and Trials there"
            for index, ref in enumerate(job.spec.warm_start.sources) if _elsewhere(ref.namespace, namespace)]


class WarmStartSources:
    """One job's imported trials: read from the sources on the first call, from its status on every later one."""

    def __init__(self, cluster: Cluster, settings: OperatorSettings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.text: str | None = None
        """`status.warmStartTrials` once known (the status this process writes later leaves it out)."""

    def imported(self, body: Mapping[str, Any], job: TuningJob) -> ImportedTrials:
        """The trials that seed the study; the first time, read from the sources, kept, and announced."""
        if not job.spec.warm_start.sources:
            return ImportedTrials()
        self.text = self.text or (body.get("status") or {}).get(WARM_START_FIELD)
        if self.text is None:
            imported, skipped = self._read(body, job)
            kept, capped = _capped(job.spec, imported.records)
            text = encode(job.spec, kept, imported.dropped + capped)
            self.cluster.patch_job_status(body["metadata"]["namespace"], job.name, {WARM_START_FIELD: text})
            self.text = text
            for message in skipped:
                self.cluster.emit_event(body, "Warning", "WarmStartSkipped", message)
            cap = f", {capped} past the cap of {TRIALS_KEPT} trials or {TEXT_LIMIT // 1024} KiB" if capped else ""
            self.cluster.emit_event(body, "Normal", "WarmStarted",
                                    f"imported {len(kept)} trials ({imported.dropped + capped} dropped: outside "
                                    f"this job's space or without its objective{cap})")
        return decode(job.spec, self.text)

    def _read(self, body: Mapping[str, Any], job: TuningJob) -> tuple[ImportedTrials, list[str]]:
        """What the sources hold now, and one message per source skipped as a whole."""
        own_namespace = body["metadata"]["namespace"]
        sources: list[WarmStartSource] = []
        skipped: list[str] = []
        for ref in job.spec.warm_start.sources:
            namespace = ref.namespace or own_namespace
            label = f"{namespace}/{ref.name}"
            elsewhere = _elsewhere(ref.namespace, own_namespace)
            source, reason = self._source(job.spec, namespace, ref.name, label)
            if source is None:
                # Another namespace's job is described to nobody: the same words whatever the reason.
                skipped.append(f"{label}: skipped, a TuningJob in another namespace is imported only when it "
                               "exists, this operator may read it, and it has this job's parameter names and "
                               "types" if elsewhere else f"{label}: {reason}")
                if elsewhere:
                    log.info("%s/%s: warm-start source %s skipped: %s", own_namespace, job.name, label, reason)
                continue
            sources.append(source)
        imported = import_trials(job.spec, sources)
        return imported, skipped + imported.incompatible

    def _source(self, spec: JobSpec, namespace: str, name: str,
                label: str) -> tuple[WarmStartSource | None, str]:
        """The source's trials, or None and why it is skipped."""
        try:
            body = self.cluster.get_job(namespace, name)
        except ApiError as error:
            if error.status != 403:
                raise
            return None, f"the operator may not read it ({error})"
        if body is None:
            return None, "no such TuningJob"
        try:
            parameters: tuple[Parameter, ...] | None = load_tuningjob(body).spec.parameters
        except SpecError:
            parameters = None  # its trials are judged one by one
        reason = incompatibility(spec, parameters) if parameters is not None else None
        if reason is not None:
            return None, f"search space not compatible ({reason})"
        uid = body["metadata"].get("uid")
        trials = [trial for trial in self.cluster.list_trials(namespace, name) if _owned_by(trial, uid)]
        return WarmStartSource(label, parameters, [record_from_trial(trial) for trial in trials]), ""


def encode(spec: JobSpec, records: list[TrialRecord], dropped: int) -> str:
    """`status.warmStartTrials`: the parameter names once, then each trial's values and objective values."""
    names = [parameter.name for parameter in spec.parameters]
    trials = [[[record.params[name] for name in names], record.objective_values()] for record in records]
    return json.dumps({"parameters": names, "trials": trials, "dropped": dropped}, separators=(",", ":"))


def decode(spec: JobSpec, text: str) -> ImportedTrials:
    """The imported trials kept in `status.warmStartTrials`, numbered 0, 1, ... as when they were read."""
    data = json.loads(text)
    names = data["parameters"]
    if sorted(names) != sorted(parameter.name for parameter in spec.parameters):
        raise ValueError(f"status.{WARM_START_FIELD} holds parameters {names}, not the job's; it is written by the "
                         "operator only: delete and recreate the TuningJob")
    records = [TrialRecord(number=number, params=dict(zip(names, params, strict=True)), state=TrialState.SUCCEEDED,
                           values=[float(value) for value in values])
               for number, (params, values) in enumerate(data["trials"])]
    return ImportedTrials(records=records, dropped=int(data["dropped"]))


def _capped(spec: JobSpec, records: list[TrialRecord]) -> tuple[list[TrialRecord], int]:
    """The first records that fit `TRIALS_KEPT` and `TEXT_LIMIT`, and how many did not."""
    kept: list[TrialRecord] = []
    size = len(encode(spec, [], len(records)))
    for record in records[:TRIALS_KEPT]:
        size += len(encode(spec, [record], 0)) - len(encode(spec, [], 0)) + 1  # the trial and a comma
        if size > TEXT_LIMIT:
            break
        kept.append(record)
    return kept, len(records) - len(kept)


def _elsewhere(ref_namespace: str | None, own_namespace: str) -> bool:
    return ref_namespace is not None and ref_namespace != own_namespace


def _owned_by(trial: Mapping[str, Any], uid: str | None) -> bool:
    """Whether the Trial belongs to the source job itself (not to an earlier job of that name, nor to a Trial
    someone else created with its label)."""
    owners = trial["metadata"].get("ownerReferences") or []
    return uid is None or any(owner.get("uid") == uid for owner in owners)
