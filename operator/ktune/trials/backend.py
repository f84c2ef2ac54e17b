"""The seam between the trial lifecycle (`ktune.trials.driver`) and the places trials run.

A backend runs attempts (a local process, a pod) and reports plain facts about them; the driver
decides what the facts mean. `TrialEvents` is how the driver tells its runner what happened, so that
the runner can persist it (Trial objects, a run directory) and tell the user (Events, progress lines).
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from ktune.engine import TrialRecord
from ktune.metrics import Scraped as Scraped  # re-exported: part of the Backend protocol


class Phase(StrEnum):
    """What a backend sees of one attempt."""

    PENDING = "Pending"
    """Created but not running yet (waiting for a node or its image)."""
    RUNNING = "Running"
    """Running: its metrics can be read."""
    SUCCEEDED = "Succeeded"
    """Ended with exit code 0."""
    FAILED = "Failed"
    """Ended otherwise (exit code, OOM kill, refused by its node)."""
    TERMINATING = "Terminating"
    """Told to stop by someone other than the driver, and not gone yet."""
    GONE = "Gone"
    """No longer there: deleted, or never created."""


@dataclass(frozen=True)
class Observation:
    """One look at an attempt."""

    phase: Phase
    result: str | None = None
    """SUCCEEDED: the result the trainer wrote (its termination message or result file); None if none."""
    result_source: str = "result"
    """Where `result` came from, named in messages (a file path, "termination message")."""
    reason: str = ""
    """FAILED and GONE: why, as one CamelCase word (Error, OOMKilled, PodDeleted); PENDING: what it waits on."""
    message: str = ""
    """FAILED, GONE: a human explanation; PENDING: the waiting message; TERMINATING: which pod on which node."""
    waiting_for: Literal["image", "node", "queue"] | None = None
    """PENDING: waiting for its image to be pulled, or for a node to take it (then `since` counts), or for a queue
    to admit it (Kueue: never timed out, and the wait is not counted in the trial's hours)."""
    since: float | None = None
    """PENDING: when the attempt was created; TERMINATING: when its grace period ended."""


class LaunchRefused(Exception):
    """The backend cannot start this attempt. `retryable`: the attempt counts as failed and the retry rules
    apply (a policy refused the pod); otherwise no retry could change it (an invalid template, no command)."""

    def __init__(self, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retryable = retryable


class LaunchDeferred(Exception):
    """The attempt cannot start yet for a reason that passes (a quota is used up): try again at a later pass,
    without using up a retry."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Backend(Protocol):
    """Where attempts run. Every method is keyed by (trial number, attempt number)."""

    def launch(self, record: TrialRecord, attempt: int) -> None:
        """Start the attempt with the record's parameters; LaunchRefused when it cannot be started, LaunchDeferred
        when it cannot start yet. Starting an attempt that already exists (after a restart) is not an error."""

    def observe(self, number: int, attempt: int) -> Observation:
        """What the attempt is doing now."""

    def scrape(self, number: int, attempt: int, cursor: object | None) -> Scraped:
        """The attempt's metrics since `cursor` (the one this attempt's previous scrape returned; None at first), in
        step order; `ktune.metrics.MetricsError` when they cannot be read (then nothing is lost: the driver asks
        again from the same cursor)."""

    def stop(self, number: int, attempt: int, grace_seconds: float | None) -> None:
        """Ask the attempt to stop (SIGTERM, pod deletion); kill it if still there after the grace period
        (None: the backend's own default)."""

    def delete(self, number: int, attempt: int, *, force: bool = False) -> None:
        """Remove a stuck or lost attempt now (`force`: without waiting for its node to confirm)."""

    def release(self, number: int, attempt: int) -> None:
        """The driver is done with this attempt: free what the backend holds for it (handles, files)."""


HowStarted = Literal["started", "retry", "resumed"]


class TrialEvents(Protocol):
    """What the driver tells its runner; the runner persists it and tells the user."""

    def trial_created(self, record: TrialRecord) -> bool:
        """A new trial was asked from the engine; False when it already exists elsewhere (another operator
        made it), in which case the driver launches nothing more in this pass."""

    def attempt_started(self, record: TrialRecord, attempt: int, how: HowStarted) -> None:
        """An attempt of the trial was launched."""

    def attempt_retried(self, number: int, attempt: int, reason: str, message: str) -> None:
        """Attempt `attempt` failed and attempt `attempt + 1` follows."""

    def trial_reported(self, number: int, attempt: int, step: int) -> None:
        """Attempt `attempt` of the trial reported a new step, handed to the pruner, which let it go on."""

    def attempt_waiting(self, record: TrialRecord, attempt: int, waiting: tuple[str, str] | None) -> None:
        """Attempt `attempt` started waiting for a queue to admit it (`waiting`: reason, message), or was admitted
        (None)."""

    def trial_finished(self, record: TrialRecord, attempt: int, last_step: int | None) -> None:
        """The engine knows the trial's outcome (succeeded, pruned, failed, stopped with the job)."""
