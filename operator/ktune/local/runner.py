"""`ktune run`: a TuningJob's trials as local processes, driven by the same engine as the operator.

One loop, ticking every `poll_interval` seconds: reap trial processes that ended (success, retry
or failure), scrape the `/metrics` page of the running ones and hand new steps to the engine
(which may answer "prune"), ask the engine whether the job is finished, and start as many new
trials as it allows. Everything the engine learns is journaled by Optuna in the run directory.

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
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ktune.engine import Engine, FinishDecision, TrialRecord, TrialState
from ktune.engine.warm_start import ImportedTrials, import_trials
from ktune.local.processes import (
    LOCAL_METRICS_HOST,
    LocalContainer,
    TrialProcess,
    free_port,
    local_container,
    local_trial_env,
    process_environment,
    require_command_on_path,
    trial_argv,
    trial_variables,
)
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
from ktune.metrics import MetricsError, TrialMetrics, metrics_url, parse_result, scrape
from ktune.spec import TuningJob
from ktune.trials.environment import contract_env

SCRAPE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class RunOptions:
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


@dataclass
class _Attempt:
    """A trial process the runner watches, with what it has heard from it."""

    process: TrialProcess
    record: TrialRecord
    last_step: int | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    next_scrape_at: float = 0.0
    stopping: bool = False  # pruned or job stopped: the engine already knows its outcome


class LocalRunner:
    """Runs one TuningJob to its end (or to an interruption) with trials as local processes."""

    def __init__(self, job: TuningJob, options: RunOptions, progress: Progress):
        self.job = job
        self.spec = job.spec
        self.options = options
        self.progress = progress
        self.container: LocalContainer = local_container(self.spec.trial.template)
        require_command_on_path(self.container)
        self.directory = RunDirectory(options.output_dir)
        self._attempts: dict[int, _Attempt] = {}  # trial number -> its live process
        self._attempt_counts: dict[int, int] = {}
        self._interrupts = 0

    def run(self) -> RunOutcome:
        state = self.directory.open(self.job, resume=self.options.resume)
        self._attempt_counts = dict(state.attempts)
        self.imported = self._warm_start()
        self.engine = Engine(self.spec, storage=state.storage, study_name=self.job.name, started_at=state.started_at,
                             imported=self.imported.records)
        if self.spec.metrics_source.type != "direct":
            self.progress.event("note: metricsSource is for clusters; ktune run scrapes each trial's /metrics directly")
        decision: FinishDecision | None = None
        with self._interruptible():
            try:
                for record in self.engine.records:
                    if record.state == TrialState.RUNNING:
                        # Interrupted, not failed: the rerun does not use up one of its retries.
                        self._attempt_counts[record.number] = self._attempt_counts.get(record.number, 1) - 1
                        self._launch(record, resumed=True)
                decision = self._loop()
            finally:
                self._stop_all()
        return self._finish(decision, time.time() - state.started_at)

    def _loop(self) -> FinishDecision | None:
        while True:
            now = time.time()
            self._reap(now)
            self._scrape_due(now)
            if self._interrupts:
                return None
            decision = self.engine.stop_decision(now)
            if decision is not None:
                self._stop_running_trials(decision, now)
                return decision
            for _ in range(self.engine.launchable(len(self._attempts), now)):
                self._launch(self.engine.ask(now))
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

    # -- trial processes -------------------------------------------------------------------------

    def _launch(self, record: TrialRecord, resumed: bool = False) -> None:
        """Start an attempt of a trial (a new one, a retry, or one interrupted before a resume)."""
        attempt = self._attempt_counts.get(record.number, 0) + 1
        self._attempt_counts[record.number] = attempt
        trial_dir = self.directory.trial_dir(record.number)
        port = self._free_port()
        contract_vars = local_trial_env(
            contract_env(self.job.name, record.number, record.params), port, trial_dir / "result.json"
        )
        variables = trial_variables(self.container, contract_vars)
        argv = trial_argv(self.container, variables)
        process = TrialProcess(record.number, attempt, port, trial_dir / "result.json", trial_dir / "log.txt")
        params = " ".join(f"{name}={_short(value)}" for name, value in record.params.items())
        try:
            process.start(argv, process_environment(variables), cwd=Path.cwd())
        except OSError as error:
            self.engine.tell_failed(record.number, "Error", f"cannot run {argv[0]!r}: {error}", now=time.time())
            self.progress.event(f"trial {record.number} failed: cannot run {argv[0]!r}: {error}")
        else:
            self._attempts[record.number] = _Attempt(process=process, record=record)
            how = "resumed" if resumed else ("started" if attempt == 1 else f"retry, attempt {attempt}")
            self.progress.event(f"trial {record.number} {how}: {params}")
        self._save_state()

    def _free_port(self) -> int:
        taken = {attempt.process.port for attempt in self._attempts.values()}
        port = free_port()
        while port in taken:
            port = free_port()
        return port

    def _reap(self, now: float) -> None:
        for number, attempt in list(self._attempts.items()):
            exit_code = attempt.process.exit_code()
            if exit_code is None:
                attempt.process.kill_if_overdue(self.options.grace_period)
                continue
            attempt.process.close()
            del self._attempts[number]
            if not attempt.stopping:
                self._settle(attempt, exit_code, now)
            self._save_state()

    def _settle(self, attempt: _Attempt, exit_code: int, now: float) -> None:
        """Tell the engine how an attempt that ended on its own went, or retry it."""
        number = attempt.record.number
        if exit_code != 0:
            reason, message = "Error", _exit_message(exit_code, attempt.process.log_tail())
            if attempt.process.attempt <= self.spec.trial.retries:
                self.progress.event(f"trial {number} attempt {attempt.process.attempt} failed ({message}); retrying")
                self._launch(attempt.record)
                return
        else:
            try:
                result = self._read_result(attempt)
            except MetricsError as error:
                reason, message = "InvalidResult", f"{attempt.process.result_path}: {error}"
            else:
                record = self.engine.tell_succeeded(number, result, now=now)
                self._announce_finished(record, now)
                return
        self.engine.tell_failed(number, reason, message, now=now)
        self.progress.event(f"trial {number} failed: {message}")

    def _read_result(self, attempt: _Attempt) -> dict[str, float]:
        """The final metrics: the result file over the last scraped values (a trainer may write none)."""
        try:
            text = attempt.process.result_path.read_text()
        except FileNotFoundError:
            return dict(attempt.last_metrics)
        return {**attempt.last_metrics, **parse_result(text)}

    def _announce_finished(self, record: TrialRecord, now: float) -> None:
        took = f" in {now - record.started_at:.0f}s" if record.started_at else ""
        if record.state == TrialState.SUCCEEDED:
            values = ", ".join(
                f"{name}={_short(record.metrics.get(name))}" for name in self.spec.objective_metrics
            )
            self.progress.event(f"trial {record.number} succeeded{took}: {values}")
        else:
            self.progress.event(f"trial {record.number} failed ({record.reason}){took}: {record.message}")

    def _scrape_due(self, now: float) -> None:
        for attempt in list(self._attempts.values()):
            if attempt.stopping or now < attempt.next_scrape_at:
                continue
            attempt.next_scrape_at = now + self.options.scrape_interval
            try:
                metrics = scrape(metrics_url(LOCAL_METRICS_HOST, attempt.process.port), SCRAPE_TIMEOUT_SECONDS)
            except MetricsError:
                continue  # not serving yet, or already gone: the result file decides
            self._observe(attempt, metrics, now)

    def _observe(self, attempt: _Attempt, metrics: TrialMetrics, now: float) -> None:
        attempt.last_metrics.update(metrics.values)
        if metrics.step is None or (attempt.last_step is not None and metrics.step <= attempt.last_step):
            return
        attempt.last_step = metrics.step
        number = attempt.record.number
        if self.engine.report(number, metrics.step, metrics.values):
            self.engine.tell_pruned(number, now=now)
            attempt.stopping = True
            attempt.process.terminate()
            pruned_on = self.spec.pruner.metric or self.spec.objective_metrics[0]
            self.progress.event(
                f"trial {number} pruned at step {metrics.step}: {pruned_on}={_short(metrics.values.get(pruned_on))}"
            )
            self._save_state()

    def _stop_running_trials(self, decision: FinishDecision, now: float) -> None:
        """The job is finished while trials still run (goal, deadline, failures): stop them."""
        for attempt in self._attempts.values():
            if not attempt.stopping:
                message = f"job finished: {decision.reason}"
                self.engine.tell_failed(attempt.record.number, "JobStopped", message, now=now)
                attempt.stopping = True
            attempt.process.terminate()

    def _stop_all(self) -> None:
        """Stop every trial process: SIGTERM, then SIGKILL after the grace period or a second Ctrl-C."""
        for attempt in self._attempts.values():
            attempt.process.terminate()
        interrupts_before = self._interrupts
        deadline = time.time() + self.options.grace_period
        while self._attempts and time.time() < deadline and self._interrupts <= max(interrupts_before, 1):
            for number, attempt in list(self._attempts.items()):
                if attempt.process.wait(timeout=0.1) is not None:
                    attempt.process.close()
                    del self._attempts[number]
        for attempt in self._attempts.values():
            attempt.process.kill()
            attempt.process.wait(timeout=5.0)
            attempt.process.close()
        self._attempts.clear()

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
            running=len(self._attempts),
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


def _exit_message(exit_code: int, log_tail: str) -> str:
    if exit_code < 0:
        try:
            what = f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            what = f"killed by signal {-exit_code}"
    else:
        what = f"exit code {exit_code}"
    last = log_tail.strip().splitlines()[-1:] if log_tail.strip() else []
    return f"{what}; last log line: {last[0]}" if last else what


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if value is None else str(value)
