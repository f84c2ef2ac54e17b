"""`ktune run`: a TuningJob's trials as local processes, driven by the same engine as the operator.

One loop, ticking every `poll_interval` seconds: the trial lifecycle (`ktune.trials.driver`) observes
every trial process through `ProcessBackend`, hands new steps to the engine (which may answer
"prune"), settles ended attempts (success, retry or failure), and starts as many new trials as the
engine allows. Everything the engine learns is journaled by Optuna in the run directory.

Interruption (Ctrl-C or SIGTERM): every trial process is stopped (SIGTERM, SIGKILL after the grace
period; a second Ctrl-C kills at once); finished trials stay finished, and trials that were
running stay RUNNING in the journal. `--resume` rebuilds the engine from the journal, reruns
those under their same number with the same parameters (steps they had already reported keep
their first values) and never reruns a finished trial.

Warm start: the finished trials of earlier runs (`--warm-start DIR`, and `spec.warmStart.from`
names read as ./ktune-runs/<name>) seed the study; the journal keeps them, marked as imported.
Hours: each trial process counts as the cpu its template requests (1 when unset) for as long as it
runs; `spec.budget.maxCpuHours` ends the job with BudgetExhausted (see `ktune.engine.budget`).
"""

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ktune.engine import Engine, FinishDecision, TrialRecord, TrialState
from ktune.engine.warm_start import ImportedTrials, import_trials
from ktune.local.distributed import local_pods, primary_rank
from ktune.local.log_file import LogFileMetrics
from ktune.local.process_backend import ProcessBackend
from ktune.local.processes import local_container, require_command_on_path
from ktune.local.progress import Progress, ProgressSnapshot
from ktune.local.results import (
    BEST_JSON,
    PLOTS_DIR,
    TRIALS_CSV,
    best_document,
    summary_table,
    write_json_atomically,
    write_plots,
    write_trials_csv,
)
from ktune.local.run_directory import RunDirectory
from ktune.local.warm_start import read_run
from ktune.log_metrics import LogParser
from ktune.spec import TuningJob
from ktune.trials.backend import HowStarted
from ktune.trials.driver import DriverSettings, TrialDriver


@dataclass(frozen=True)
class LocalRunOptions:
    """How `ktune run` runs a job on this machine."""

    output_dir: Path
    """Where the journal, trials.csv, best.json, plots and per-trial logs go."""
    resume: bool = False
    """Continue the run journaled in `output_dir` instead of starting a new one."""
    scrape_interval: float = 2.0
    """Seconds between two scrapes of one trial's `/metrics` page."""
    grace_period: float = 10.0
    """Seconds a trial told to stop (SIGTERM) gets before SIGKILL."""
    poll_interval: float = 0.2
    """Seconds between two ticks of the runner's loop."""
    warm_start: tuple[Path, ...] = ()
    """Directories of earlier runs whose finished trials seed the study (besides spec.warmStart.from)."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: the engine's decision (None when interrupted) and the final records."""

    decision: FinishDecision | None
    records: list[TrialRecord]
    counts: dict[str, int]
    wall_seconds: float
    summary: str
    plot_notes: list[str]

    @property
    def interrupted(self) -> bool:
        return self.decision is None


class LocalRunner:
    """Runs one TuningJob to its end (or to an interruption) with trials as local processes."""

    def __init__(self, job: TuningJob, options: LocalRunOptions, progress: Progress):
        self.job = job
        self.spec = job.spec
        self.options = options
        self.progress = progress
        pods = local_pods(self.spec.trial)
        containers = [local_container(pod.template, pod.path, pod.container) for pod in pods]
        for container in dict.fromkeys(containers):
            require_command_on_path(container)
        primary = primary_rank(self.spec.trial, pods)
        self.directory = RunDirectory(options.output_dir)
        self.backend = ProcessBackend(job.name, containers, self.directory, options.grace_period, self._log_metrics(),
                                      self.spec.trial, primary)
        self._attempt_counts: dict[int, int] = {}
        self._interrupts = 0

    def _log_metrics(self) -> LogFileMetrics | None:
        """`metricsSource: logs`: metrics from each trial's output, the same lines the operator reads from pod logs."""
        source = self.spec.metrics_source
        if source.type != "logs":
            return None
        recorded = frozenset(self.spec.recorded_metrics)
        return LogFileMetrics(
            lambda: LogParser(source.format, source.filter, source.step_metric, always=recorded),
            lambda number, message: self.progress.event(f"warning: trial {number}: {message}"))

    def run(self) -> RunOutcome:
        state = self.directory.open(self.job, resume=self.options.resume)
        self._attempt_counts = dict(state.attempts)
        self.imported = self._warm_start()
        self.engine = Engine(self.spec, storage=state.storage, study_name=self.job.name, started_at=state.started_at,
                             imported=self.imported.records)
        settings = DriverSettings(scrape_interval_seconds=self.options.scrape_interval,
                                  stop_grace_seconds=self.options.grace_period)
        self.driver = TrialDriver(self.engine, settings, _ProgressEvents(self))
        if self.spec.metrics_source.type == "prometheus":
            self.progress.event("note: metricsSource prometheus is for clusters; ktune run scrapes each trial's "
                                "/metrics directly")
        resource = self.spec.trial.resource
        if resource is not None and resource.queue_name is not None:
            self.progress.event(f"note: spec.trial.queueName {resource.queue_name} is for clusters with Kueue; "
                                "ktune run starts each trial at once")
        decision: FinishDecision | None = None
        with self._interruptible():
            try:
                for record in self.engine.records:
                    if record.state == TrialState.RUNNING:
                        # Interrupted, not failed: the rerun does not use up one of its retries.
                        attempts = self._attempt_counts.get(record.number, 1) - 1
                        self.driver.adopt(record, attempts, relaunch="resumed")
                decision = self._loop()
            finally:
                self.backend.shutdown(hurry=lambda: self._interrupts > 1)
        return self._finish(decision, time.time() - state.started_at)

    def _loop(self) -> FinishDecision | None:
        while True:
            now = time.time()
            if self._interrupts:
                return None
            decision = self.driver.advance(self.backend, now)
            if decision is not None:
                return decision
            self.progress.update(self._snapshot(now))
            time.sleep(self.options.poll_interval)

    def _warm_start(self) -> ImportedTrials:
        """The trials of the earlier runs this job starts from (RunDirectoryError for a path that is no run)."""
        paths = [Path("ktune-runs") / ref.name for ref in self.spec.warm_start.sources]
        paths += list(self.options.warm_start)
        imported = import_trials(self.spec, [read_run(path) for path in paths])
        for message in imported.incompatible:
            self.progress.event(f"warm start: skipped {message}")
        if paths:
            self.progress.event(f"warm start: imported {len(imported.records)} trials from "
                                f"{', '.join(str(path) for path in paths)} ({imported.dropped} dropped: outside "
                                "this job's space or without its objective)")
        return imported

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Turn SIGINT/SIGTERM into a request to stop, handled by the loop (no exception mid-update)."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self._interrupts += 1
            if self._interrupts == 1:
                self.progress.event("interrupted: stopping trials (Ctrl-C again to kill them now)")

        previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # -- outputs ---------------------------------------------------------------------------------

    def _snapshot(self, now: float) -> ProgressSnapshot:
        counts = self.engine.counts()
        return ProgressSnapshot(
            done=counts["succeeded"] + counts["pruned"] + counts["failed"],
            max_trials=self.spec.budget.max_trials,
            running=self.driver.running,
            succeeded=counts["succeeded"],
            pruned=counts["pruned"],
            failed=counts["failed"],
            best=self._best_text(),
            elapsed=now - self.directory.started_at,
        )

    def _best_text(self) -> str | None:
        if self.spec.multi_objective:
            front = self.engine.pareto_front
            return f"{len(front)} trial(s) on the Pareto front" if front else None
        best = self.engine.best_trial
        if best is None or not best.values:
            return None
        return f"{self.spec.objective_metrics[0]}={_short(best.values[0])} (trial {best.number})"

    def _save_state(self) -> None:
        self.directory.save(self._attempt_counts)
        write_trials_csv(self.directory.path / TRIALS_CSV, self.spec, self.engine.records, self._attempt_counts)

    def _finish(self, decision: FinishDecision | None, wall: float) -> RunOutcome:
        self.progress.close()
        counts = self.engine.counts()
        records = self.engine.records
        best = None if self.spec.multi_objective else self.engine.best_trial
        front = self.engine.pareto_front if self.spec.multi_objective else []
        self._save_state()
        accounting = self._accounting(time.time())
        write_json_atomically(
            self.directory.path / BEST_JSON,
            best_document(self.job.name, self.spec, counts, best, front, decision, wall) | accounting,
        )
        notes = write_plots(self.directory.path / PLOTS_DIR, self.engine.study, self.spec)
        summary = summary_table(self.job.name, self.spec, counts, best, front, decision, wall)
        summary += f"\nCPU-hours used: {accounting['cpuHoursUsed']:.4g}"
        if accounting["gpuHoursUsed"]:
            summary += f", GPU-hours used: {accounting['gpuHoursUsed']:.4g}"
        if accounting["importedTrials"] or accounting["importedTrialsDropped"]:
            summary += (f"\nWarm start: {accounting['importedTrials']} imported trials "
                        f"({accounting['importedTrialsDropped']} dropped)")
        return RunOutcome(decision, records, counts, wall, summary, notes)

    def _accounting(self, now: float) -> dict[str, Any]:
        """What best.json adds about the warm start and the hours the trials used."""
        usage = self.engine.budget_usage(now)
        return {"importedTrials": self.engine.imported_count, "importedTrialsDropped": self.imported.dropped,
                "cpuHoursUsed": round(usage.cpu_hours, 6), "gpuHoursUsed": round(usage.gpu_hours, 6)}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if value is None else str(value)


class _ProgressEvents:
    """The driver's events as progress lines, and the run directory kept up to date with them."""

    def __init__(self, runner: LocalRunner) -> None:
        self.runner = runner

    def trial_created(self, record: TrialRecord) -> bool:
        return True

    def attempt_started(self, record: TrialRecord, attempt: int, how: HowStarted) -> None:
        self.runner._attempt_counts[record.number] = attempt
        params = " ".join(f"{name}={_short(value)}" for name, value in record.params.items())
        label = {"started": "started", "resumed": "resumed", "retry": f"retry, attempt {attempt}"}[how]
        self.runner.progress.event(f"trial {record.number} {label}: {params}")
        self.runner._save_state()

    def attempt_retried(self, number: int, attempt: int, reason: str, message: str) -> None:
        self.runner.progress.event(f"trial {number} attempt {attempt} failed ({message}); retrying")

    def trial_reported(self, number: int, attempt: int, step: int) -> None:
        """Nothing to add: the journal already holds the step."""

    def attempt_waiting(self, record: TrialRecord, attempt: int, waiting: tuple[str, str] | None) -> None:
        """Never called: a local process waits in no queue (`ktune run` ignores spec.trial.queueName)."""

    def trial_finished(self, record: TrialRecord, attempt: int, last_step: int | None) -> None:
        spec = self.runner.spec
        took = f" in {record.finished_at - record.started_at:.0f}s" if record.started_at and record.finished_at \
            else ""
        if record.state == TrialState.SUCCEEDED:
            values = ", ".join(f"{name}={_short(record.metrics.get(name))}" for name in spec.objective_metrics)
            line = f"trial {record.number} succeeded{took}: {values}"
        elif record.state == TrialState.PRUNED:
            pruned_on = spec.pruner.metric or spec.objective_metrics[0]
            value = record.intermediate.get(last_step) if last_step is not None else None
            line = f"trial {record.number} pruned at step {last_step}: {pruned_on}={_short(value)}"
        else:
            line = f"trial {record.number} failed ({record.reason}){took}: {record.message}"
        self.runner.progress.event(line)
        self.runner._save_state()
