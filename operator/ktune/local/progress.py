"""What `ktune run` shows while it works: one live status line on a terminal, plain lines otherwise."""

import shutil
import time
from dataclasses import dataclass
from typing import TextIO

_CLEAR_LINE = "\r\x1b[2K"


@dataclass(frozen=True)
class ProgressSnapshot:
    """The job's state at one moment, as the status line shows it."""

    done: int
    max_trials: int
    running: int
    succeeded: int
    pruned: int
    failed: int
    best: str | None  # e.g. "ndcg_at_10=0.8123 (trial 3)"
    elapsed: float

    def line(self) -> str:
        best = self.best or "none yet"
        return (
            f"[{format_duration(self.elapsed)}] trials {self.done}/{self.max_trials} done · "
            f"{self.running} running · {self.succeeded} succeeded · {self.pruned} pruned · "
            f"{self.failed} failed · best {best}"
        )


def format_duration(seconds: float) -> str:
    """H:MM:SS."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Progress:
    """Prints events as lines; keeps a status line at the bottom of a terminal, redrawn in place.

    When the stream is not a terminal (CI logs, pipes) there is no redrawing: the status line is
    printed as a plain line whenever it changes, at most every ``plain_interval`` seconds.
    """

    def __init__(self, stream: TextIO, *, tty: bool | None = None, plain_interval: float = 10.0):
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._plain_interval = plain_interval
        self._status = ""
        self._printed_status = ""
        self._printed_at = 0.0

    def event(self, text: str) -> None:
        """A line that stays (a trial started, finished, was pruned...)."""
        if self._tty:
            self._stream.write(_CLEAR_LINE + text + "\n" + self._fit(self._status))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def update(self, snapshot: ProgressSnapshot) -> None:
        """Refresh the status line."""
        line = snapshot.line()
        if line == self._status:
            return
        self._status = line
        if self._tty:
            self._stream.write(_CLEAR_LINE + self._fit(self._status))
            self._stream.flush()
            return
        # Plain mode: the elapsed time alone does not make a new line.
        status_without_clock = self._status.split("] ", 1)[1]
        now = time.monotonic()
        if status_without_clock != self._printed_status and now - self._printed_at >= self._plain_interval:
            self._stream.write(self._status + "\n")
            self._stream.flush()
            self._printed_status = status_without_clock
            self._printed_at = now

    def close(self) -> None:
        """End the live line so that what follows starts on a fresh line."""
        if self._tty and self._status:
            self._stream.write(_CLEAR_LINE + self._status + "\n")
        elif not self._tty and self._status and self._status.split("] ", 1)[1] != self._printed_status:
            self._stream.write(self._status + "\n")
        self._stream.flush()
        self._status = ""

    def _fit(self, text: str) -> str:
        width = shutil.get_terminal_size((120, 20)).columns
        return text if len(text) < width else text[: max(width - 2, 10)] + "…"
