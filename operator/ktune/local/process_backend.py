"""The local backend: each attempt a process on this machine, with its own metrics port and result file.

What the trial lifecycle (`ktune.trials.driver`) needs of a backend, for processes: launch one with
the contract's environment, say whether it runs or how it ended, scrape its `/metrics` page, stop it
(SIGTERM, then SIGKILL once its grace period is over, as the kubelet would).

A resource trial (a Job, a PyTorchJob) runs one process per pod (`ktune.local.distributed`), each from its own
pod template's container: the primary rank (rank 0 unless `primaryPod` selects another pod) is the attempt's
process above (its metrics, its result); the other ranks are its `workers`, started, stopped and killed with it.
The attempt succeeds when every rank exited 0 and fails at the first rank that did not (the others are then
stopped, as the Job controller or the training-operator stops a failed job's pods).
"""

import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ktune.engine import TrialRecord
from ktune.local.distributed import distributed_env
from ktune.local.log_file import LogFileMetrics
from ktune.local.processes import (
    LOCAL_METRICS_HOST,
    LocalContainer,
    TrialProcess,
    free_port,
    local_trial_env,
    process_environment,
    trial_argv,
    trial_variables,
)
from ktune.local.run_directory import RunDirectory
from ktune.metrics import Scraped, metrics_url, scrape
from ktune.spec import TrialSpec
from ktune.trials.backend import LaunchRefused, Observation, Phase
from ktune.trials.environment import contract_env

SCRAPE_TIMEOUT_SECONDS = 2.0


class ProcessBackend:
    """Trial attempts as local processes (one at a time per trial)."""

    def __init__(self, job_name: str, containers: Sequence[LocalContainer], directory: RunDirectory,
                 grace_period: float, logs: LogFileMetrics | None = None, trial: TrialSpec | None = None,
                 primary: int = 0):
        """`containers`: each rank's trainer container (one for a pod trial; `ktune.local.distributed`), `primary`
        the rank whose process serves the metrics and writes the result;
        `logs`: read metrics from each process's output (`metricsSource: logs`) instead of its `/metrics`;
        `trial`: the job's trial, for a resource trial's distributed variables (None: one process per attempt)."""
        self.trial = trial
        self.containers = list(containers)
        self.pods = len(self.containers)
        self.primary = primary
        self.workers: dict[int, list[TrialProcess]] = {}  # trial number -> its current attempt's ranks 1..
        self.logs = logs
        self.job_name = job_name
        self.directory = directory
        self.grace_period = grace_period
        self.processes: dict[int, TrialProcess] = {}  # trial number -> its current attempt

    def launch(self, record: TrialRecord, attempt: int) -> None:
        master_port = self._free_port()
        ranks: list[TrialProcess] = []
        try:
            for rank in range(self.pods):
                ranks.append(self._start(record, attempt, rank, master_port))
        except LaunchRefused:
            for started in ranks:  # a distributed run is all its ranks or none
                started.kill()
                started.close()
            raise
        self.processes[record.number] = ranks[self.primary]
        self.workers[record.number] = [process for process in ranks if process.rank != self.primary]

    def _start(self, record: TrialRecord, attempt: int, rank: int, master_port: int) -> TrialProcess:
        """Rank `rank` of the attempt (rank 0: the only one of a pod trial), with its own metrics port and files."""
        trial_dir = self.directory.trial_dir(record.number)
        suffix = f"-{rank}" if rank else ""
        port = self._free_port()
        result_path = trial_dir / f"result{suffix}.json"
        contract_vars = local_trial_env(contract_env(self.job_name, record.number, record.params), port, result_path)
        container = self.containers[rank]
        variables = trial_variables(container, contract_vars)
        if self.trial is not None:
            variables.update(distributed_env(self.trial, rank, master_port))
        argv = trial_argv(container, variables)
        process = TrialProcess(record.number, attempt, port, result_path, trial_dir / f"log{suffix}.txt", rank)
        try:
            process.start(argv, process_environment(variables), cwd=Path.cwd())
        except OSError as error:
            raise LaunchRefused("Error", f"cannot run {argv[0]!r}: {error}") from None
        return process

    def _free_port(self) -> int:
        taken = {process.port for process in self._every_process()}
        port = free_port()
        while port in taken:
            port = free_port()
        return port

    def observe(self, number: int, attempt: int) -> Observation:
        process = self.processes.get(number)
        if process is None or process.attempt != attempt:
            return Observation(Phase.GONE, reason="Error", message="the trial's process is gone")
        workers = self.workers.get(number, [])
        for each in (process, *workers):
            each.kill_if_overdue(self.grace_period)
        exit_code = process.exit_code()
        for worker in workers:
            worker_code = worker.exit_code()
            if worker_code not in (None, 0) and exit_code in (None, 0):
                self._terminate(number)
                return Observation(Phase.FAILED, reason="Error",
                                   message=f"rank {worker.rank}: {exit_message(worker_code, worker.log_tail())}")
        if exit_code is None or (exit_code == 0 and any(w.exit_code() is None for w in workers)):
            return Observation(Phase.RUNNING)
        if exit_code != 0:
            self._terminate(number)
            return Observation(Phase.FAILED, reason="Error", message=exit_message(exit_code, process.log_tail()))
        try:
            result: str | None = process.result_path.read_text()
        except FileNotFoundError:
            result = None
        if self.logs is not None and not (result or "").strip():
            return Observation(Phase.SUCCEEDED, result=self.logs.final_result(process.log_path, process.log_start),
                               result_source=str(process.log_path))
        return Observation(Phase.SUCCEEDED, result=result, result_source=str(process.result_path))

    def scrape(self, number: int, attempt: int, cursor: object | None) -> Scraped:
        """The process's `/metrics` page as it is now (a page holds only the newest step: no cursor), or what it
        printed since `cursor` (`logs`)."""
        if self.logs is not None:
            process = self.processes[number]
            return self.logs.read(number, process.log_path, process.log_start, cursor)
        return Scraped([scrape(metrics_url(LOCAL_METRICS_HOST, self.processes[number].port), SCRAPE_TIMEOUT_SECONDS)])

    def stop(self, number: int, attempt: int, grace_seconds: float | None) -> None:
        if grace_seconds is not None:
            self.grace_period = grace_seconds
        self._terminate(number)

    def _terminate(self, number: int) -> None:
        for process in (self.processes[number], *self.workers.get(number, [])):
            process.terminate()

    def delete(self, number: int, attempt: int, *, force: bool = False) -> None:
        for process in (self.processes[number], *self.workers.get(number, [])):
            process.kill()

    def release(self, number: int, attempt: int) -> None:
        process = self.processes.get(number)
        if process is not None and process.attempt == attempt:
            for each in (process, *self.workers.pop(number, [])):
                each.close()
            del self.processes[number]

    def _every_process(self) -> list[TrialProcess]:
        return [*self.processes.values(), *(worker for workers in self.workers.values() for worker in workers)]

    def shutdown(self, hurry: Callable[[], bool]) -> None:
        """Stop every process: SIGTERM, then SIGKILL after the grace period, or as soon as `hurry()` says so
        (a second Ctrl-C)."""
        running = self._every_process()
        for process in running:
            process.terminate()
        deadline = time.time() + self.grace_period
        while running and time.time() < deadline and not hurry():
            for process in list(running):
                if process.wait(timeout=0.1) is not None:
                    process.close()
                    running.remove(process)
        for process in running:
            process.kill()
            process.wait(timeout=5.0)
            process.close()
        self.processes.clear()
        self.workers.clear()


def exit_message(exit_code: int, log_tail: str) -> str:
    """How a process ended, with the last line it logged."""
    if exit_code < 0:
        try:
            what = f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            what = f"killed by signal {-exit_code}"
    else:
        what = f"exit code {exit_code}"
    last = log_tail.strip().splitlines()[-1:] if log_tail.strip() else []
    return f"{what}; last log line: {last[0]}" if last else what
