"""The local backend: each attempt a process on this machine, with its own metrics port and result file.

What the trial lifecycle (`ktune.trials.driver`) needs of a backend, for processes: launch one with
the contract's environment, say whether it runs or how it ended, scrape its `/metrics` page, stop it
(SIGTERM, then SIGKILL once its grace period is over, as the kubelet would).
"""

import signal
import time
from collections.abc import Callable
from pathlib import Path

from ktune.engine import TrialRecord
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
from ktune.trials.backend import LaunchRefused, Observation, Phase
from ktune.trials.environment import contract_env

SCRAPE_TIMEOUT_SECONDS = 2.0


class ProcessBackend:
    """Trial attempts as local processes (one at a time per trial)."""

    def __init__(self, job_name: str, container: LocalContainer, directory: RunDirectory, grace_period: float,
                 logs: LogFileMetrics | None = None):
        """`logs`: read metrics from each process's output (`metricsSource: logs`) instead of its `/metrics`."""
        self.logs = logs
        self.job_name = job_name
        self.container = container
        self.directory = directory
        self.grace_period = grace_period
        self.processes: dict[int, TrialProcess] = {}  # trial number -> its current attempt

    def launch(self, record: TrialRecord, attempt: int) -> None:
        trial_dir = self.directory.trial_dir(record.number)
        port = self._free_port()
        contract_vars = local_trial_env(contract_env(self.job_name, record.number, record.params), port,
                                        trial_dir / "result.json")
        variables = trial_variables(self.container, contract_vars)
        argv = trial_argv(self.container, variables)
        process = TrialProcess(record.number, attempt, port, trial_dir / "result.json", trial_dir / "log.txt")
        try:
            process.start(argv, process_environment(variables), cwd=Path.cwd())
        except OSError as error:
            raise LaunchRefused("Error", f"cannot run {argv[0]!r}: {error}") from None
        self.processes[record.number] = process

    def _free_port(self) -> int:
        taken = {process.port for process in self.processes.values()}
        port = free_port()
        while port in taken:
            port = free_port()
        return port

    def observe(self, number: int, attempt: int) -> Observation:
        process = self.processes.get(number)
        if process is None or process.attempt != attempt:
            return Observation(Phase.GONE, reason="Error", message="the trial's process is gone")
        process.kill_if_overdue(self.grace_period)
        exit_code = process.exit_code()
        if exit_code is None:
            return Observation(Phase.RUNNING)
        if exit_code != 0:
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
        self.processes[number].terminate()

    def delete(self, number: int, attempt: int, *, force: bool = False) -> None:
        self.processes[number].kill()

    def release(self, number: int, attempt: int) -> None:
        process = self.processes.get(number)
        if process is not None and process.attempt == attempt:
            process.close()
            del self.processes[number]

    def shutdown(self, hurry: Callable[[], bool]) -> None:
        """Stop every process: SIGTERM, then SIGKILL after the grace period, or as soon as `hurry()` says so
        (a second Ctrl-C)."""
        for process in self.processes.values():
            process.terminate()
        deadline = time.time() + self.grace_period
        while self.processes and time.time() < deadline and not hurry():
            for number, process in list(self.processes.items()):
                if process.wait(timeout=0.1) is not None:
                    process.close()
                    del self.processes[number]
        for process in self.processes.values():
            process.kill()
            process.wait(timeout=5.0)
            process.close()
        self.processes.clear()


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
