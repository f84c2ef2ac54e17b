"""One trial attempt as a local process, started from the trial template's first container (a Kubeflow
replica's: the container its training-operator requires, e.g. `pytorch`).

`command` and `args` are expanded with Kubernetes' `$(VAR)` rules against the container's
environment (the contract variables first, then the container's own `env`, in order), exactly
what the kubelet would do in a pod. The process also inherits this process's environment (PATH,
HOME, ...) with the bin directory of the running Python first on PATH, so `ktune-trainer`
resolves inside the same virtual environment.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ktune import contract
from ktune.local.expansion import expand, expand_env

TEMPLATE_PATH = "spec.trial.template"
LOCAL_METRICS_HOST = "127.0.0.1"


class LocalTemplateError(ValueError):
    """The trial template asks for something a local process cannot do; lists every problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LocalContainer:
    """What of the trainer container a local process honours: its command line and plain env values."""

    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    path: str = f"{TEMPLATE_PATH}.spec.containers[0]"
    """Where it is in the TuningJob, for messages."""


def local_container(template: Mapping[str, Any], path: str = TEMPLATE_PATH, name: str | None = None) -> LocalContainer:
    """The pod template at `path`'s trainer container (the one named `name`, else the first), checked for what
    `ktune run` can honour."""
    spec = template.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], Mapping):
        raise LocalTemplateError([f"{path}.spec.containers: needs at least one container"])
    index = next((i for i, each in enumerate(containers) if isinstance(each, Mapping) and each.get("name") == name),
                 0)
    container, where_container = containers[index], f"{path}.spec.containers[{index}]"
    problems: list[str] = []
    command = container.get("command") or ()
    if not command:
        problems.append(
            f"{where_container}.command: required by `ktune run` (a local process has no image entrypoint); "
            "give the trainer's command, e.g. [ktune-trainer, train]"
        )
    if container.get("envFrom"):
        problems.append(f"{where_container}.envFrom: not supported by `ktune run`; list plain `env` values instead")
    env: list[tuple[str, str]] = []
    for position, entry in enumerate(container.get("env") or []):
        where = f"{where_container}.env[{position}]"
        env_name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(env_name, str) or not env_name:
            problems.append(f"{where}.name: required")
        elif "valueFrom" in entry:
            problems.append(
                f"{where} ({env_name}): valueFrom is not supported by `ktune run` (no Secrets, ConfigMaps or "
                "downward API on a laptop); give a plain `value`"
            )
        else:
            env.append((env_name, str(entry.get("value", ""))))
    if problems:
        raise LocalTemplateError(problems)
    return LocalContainer(
        command=tuple(str(part) for part in command),
        args=tuple(str(part) for part in container.get("args") or []),
        env=tuple(env),
        path=where_container,
    )


def require_command_on_path(container: LocalContainer) -> None:
    """Fail before any trial starts when the command does not exist here (every trial would fail)."""
    program = container.command[0]
    if "$(" in program:
        return  # known only once expanded
    if shutil.which(program, path=process_environment({})["PATH"]) is None:
        raise LocalTemplateError(
            [
                f"{container.path}.command[0]: {program!r} is not found on PATH (nor in "
                f"{Path(sys.executable).parent}); install it in this environment or give its path"
            ]
        )


def free_port(host: str = LOCAL_METRICS_HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def trial_variables(container: LocalContainer, contract_vars: Mapping[str, str]) -> dict[str, str]:
    """The container's environment as Kubernetes resolves it: contract variables, then `env` in order.

    The local metrics address and result path are the runner's, whatever `env` says: a manifest
    written for a cluster may pin KTUNE_METRICS_PORT, which would make parallel local trials collide.
    """
    resolved = expand_env(container.env, base=contract_vars)
    for name in (contract.ENV_METRICS_HOST, contract.ENV_METRICS_PORT, contract.ENV_RESULT_PATH):
        if name in contract_vars:
            resolved[name] = contract_vars[name]
    return resolved


def trial_argv(container: LocalContainer, variables: Mapping[str, str]) -> list[str]:
    """`command` + `args` with `$(VAR)` references expanded the way the kubelet does."""
    return [expand(part, variables) for part in (*container.command, *container.args)]


def local_trial_env(contract_vars: Mapping[str, str], port: int, result_path: Path) -> dict[str, str]:
    """The contract variables plus the local metrics address and result path."""
    return {
        **contract_vars,
        contract.ENV_METRICS_HOST: LOCAL_METRICS_HOST,
        contract.ENV_METRICS_PORT: str(port),
        contract.ENV_RESULT_PATH: str(result_path),
    }


def process_environment(variables: Mapping[str, str]) -> dict[str, str]:
    """The full environment of the child: ours, with this Python's bin directory first on PATH, then the trial's."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink to the base one
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]) if env.get("PATH") else bin_dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(variables)
    return env


class TrialProcess:
    """A running trial attempt: its process (in its own process group), metrics port, result file and log."""

    def __init__(self, number: int, attempt: int, port: int, result_path: Path, log_path: Path, rank: int = 0):
        self.number = number
        self.attempt = attempt
        self.rank = rank  # of a resource trial's processes (0 for a pod trial)
        self.port = port
        self.result_path = result_path
        self.log_path = log_path
        self.started_at = time.time()
        self.terminated_at: float | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_start = 0

    def start(self, argv: list[str], env: Mapping[str, str], cwd: Path) -> None:
        """Launch the attempt; its output goes to the log file. OSError when the command cannot be run."""
        self.result_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"=== trial {self.number} attempt {self.attempt}: {' '.join(argv)}\n".encode())
        self._log.flush()
        self.log_start = self._log.tell()  # where this attempt's own output begins (metricsSource logs reads it)
        try:
            # Own session: a terminal's Ctrl-C reaches only ktune, which then stops each trial itself.
            self._popen = subprocess.Popen(
                argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError:
            self.close()
            raise

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def exit_code(self) -> int | None:
        """The exit code once the process ended (negative: killed by that signal), None while it runs."""
        return self._popen.poll() if self._popen else None

    def terminate(self) -> None:
        """Ask the process group to stop (SIGTERM); `kill_if_overdue` enforces the grace period."""
        if self.terminated_at is None:
            self.terminated_at = time.time()
            self._signal(signal.SIGTERM)

    def kill_if_overdue(self, grace_period: float) -> None:
        """SIGKILL a terminated process group that outlived its grace period."""
        if self.terminated_at is not None and time.time() - self.terminated_at >= grace_period:
            self._signal(signal.SIGKILL)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to end; its exit code, or None if it still runs."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the attempt's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _signal(self, signum: signal.Signals) -> None:
        if self._popen is None or self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)
