"""`metricsSource: {type: logs}` under `ktune run`: a trial's metrics from its process's output file.

The same parser as the operator's (`ktune.log_metrics`); the cursor is a byte offset into the file, which holds
every attempt of the trial one after the other (each attempt starts reading where its own output starts). A read
takes at most READ_LIMIT_BYTES; a line that is still being written is left for the next read, and a line longer
than any metrics line is skipped up to its newline and counted.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ktune.log_metrics import MAX_LINE_CHARS, LogParser
from ktune.metrics import MetricsError, Scraped

READ_LIMIT_BYTES = 1024 * 1024
FINAL_READ_BYTES = 4 * 1024 * 1024
"""The final metrics are the last value of each name in at most this much of the end of the attempt's output."""


@dataclass(frozen=True)
class FileCursor:
    parser: LogParser
    offset: int
    skipping: bool = False
    """Inside a line too long to read: what follows up to its newline is skipped."""


class LogFileMetrics:
    """Reads attempts' metrics from their output files. `new_parser` makes one attempt's parser; `warn(number,
    message)` tells the user about ignored lines and names (a warning line)."""

    def __init__(self, new_parser: Callable[[], LogParser], warn: Callable[[int, str], None]) -> None:
        self.new_parser = new_parser
        self.warn = warn

    def read(self, number: int, path: Path, start: int, cursor: object | None) -> Scraped:
        """The readings in the lines written since `cursor` (None: since `start`, where the attempt's output begins)."""
        state = cursor if isinstance(cursor, FileCursor) else FileCursor(self.new_parser(), start)
        try:
            with path.open("rb") as output:
                output.seek(state.offset)
                data = output.read(READ_LIMIT_BYTES)
        except OSError as error:
            raise MetricsError(f"cannot read the trial's output {path}: {error}") from error
        offset, skipping, parser = state.offset, state.skipping, state.parser
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                return Scraped([], FileCursor(parser, offset + len(data), skipping=True))
            offset, data, skipping = offset + end + 1, data[end + 1:], False
        complete = data.rfind(b"\n") + 1
        lines = [line.decode("utf-8", errors="replace").rstrip("\r") for line in data[:complete].split(b"\n")[:-1]]
        offset += complete
        if len(data) - complete > MAX_LINE_CHARS:
            parser.long_line()
            offset, skipping = offset + len(data) - complete, True
        readings = parser.feed(lines)
        for warning in parser.warnings():
            self.warn(number, warning)
        return Scraped(readings, FileCursor(parser, offset, skipping))

    def final_result(self, path: Path, start: int) -> str | None:
        """The last value of each name at the end of the attempt's output, as a result (a JSON object); None when it
        names no metric."""
        try:
            with path.open("rb") as output:
                size = output.seek(0, 2)
                begin = max(start, size - FINAL_READ_BYTES)
                output.seek(begin)
                data = output.read()
        except OSError:
            return None
        lines = data.decode("utf-8", errors="replace").splitlines()
        if begin > start and lines:
            lines = lines[1:]  # the first line is cut
        last: dict[str, float] = {}
        for reading in self.new_parser().feed(lines):
            last.update(reading.values)
        return json.dumps(last) if last else None
