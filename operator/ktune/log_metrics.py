"""Metrics from a trainer's log lines, as Katib's StdOut collector reads them: `name=value` pairs or JSON objects.

`metricsSource: {type: logs}` reads the trial container's log (the operator through the API's `pods/log`, `ktune
run` from the process's output file) and hands each complete line to a `LogParser`, which turns them into one
`TrialMetrics` per step, oldest first. A line is either

- Katib's format: every match of the filter (default `contract.KATIB_DEFAULT_FILTER`) is one `name=value` pair,
  group 1 the name and group 2 the value, e.g. `epoch=1 ndcg_at_10=0.31`; or
- a JSON object, e.g. `{"epoch": 1, "ndcg_at_10": 0.31}`; values may be numbers or numeric strings (Katib's
  JSON format writes strings), JSON's `NaN` is NaN.

Names are read as ktune metric names: lower-cased, other characters than letters, digits and `_` become `_`
(`Validation-accuracy` is `validation_accuracy`, as `ktune import-katib` names Katib's metrics). The value named by
`step_metric` is the step of the other values on its line and of the lines after it that name
no step (Katib orders by timestamp; the pruner needs a step). Values read before any step count only for the final
metrics. Other lines are ignored: most of a log is not metrics.

A chatty or broken trainer cannot grow what ktune keeps: lines longer than `MAX_LINE_CHARS` and names beyond the
first `MAX_NAMES` distinct ones (the job's own names always count) are ignored and counted; `LogParser.warnings`
says so once for each kind, for a warning Event or line.
"""

import json
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from ktune.contract import DEFAULT_STEP_METRIC, KATIB_DEFAULT_FILTER
from ktune.metrics import MAX_STEP, TrialMetrics

MAX_LINE_CHARS = 64 * 1024
"""A longer line is ignored whole: no trainer prints its metrics on a line this long."""
MAX_NAMES = 64
"""Distinct metric names read from one attempt's log, besides the job's own (as the trial driver keeps)."""
FORMATS = ("katib", "json")


@dataclass
class LogParser:
    """Reads one attempt's log lines in order; keeps what the next lines need (the current step, the names seen).

    `format` None tries JSON on lines that look like an object and Katib's pairs on the others. `always`: names
    that are never dropped (the job's objectives and metrics)."""

    format: str | None = None
    filter: str | None = None
    step_metric: str = DEFAULT_STEP_METRIC
    always: Collection[str] = ()
    step: int | None = None
    """The step the latest values belong to (None before the log named one)."""
    names: set[str] = field(default_factory=set)
    long_lines: int = 0
    """Lines ignored for being longer than MAX_LINE_CHARS."""
    dropped_names: set[str] = field(default_factory=set)
    """Names ignored because MAX_NAMES others came first (at most MAX_NAMES of them are remembered)."""
    dropped_values: int = 0
    bad_steps: int = 0
    """Step values that are not a whole number from 0 to 2^63-1 (their line's values are kept, without a step)."""
    _warned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"log format must be one of {', '.join(FORMATS)} (got {self.format!r})")
        self._pattern = re.compile(self.filter or KATIB_DEFAULT_FILTER)
        self.step_metric = metric_name(self.step_metric)

    def feed(self, lines: Iterable[str]) -> list[TrialMetrics]:
        """The readings in these complete lines, one per step in the order the steps came (values of consecutive
        lines at one step are merged, a later value of a name replacing the earlier)."""
        readings: list[TrialMetrics] = []
        for line in lines:
            if len(line) > MAX_LINE_CHARS:
                self.long_line()
                continue
            pairs = self._pairs(line)
            if not pairs:
                continue
            values = self._kept(pairs)
            if self.step_metric in pairs:
                self.step = self._step(pairs[self.step_metric], self.step)
            if not values:
                continue  # a line naming only the step: the values on the next lines are at it
            if readings and readings[-1].step == self.step:
                readings[-1].values.update(values)
            else:
                readings.append(TrialMetrics(values=values, step=self.step))
        return readings

    def long_line(self) -> None:
        """A line over MAX_LINE_CHARS, which a reader may skip without handing it over whole."""
        self.long_lines += 1

    def warnings(self) -> list[str]:
        """What was ignored, each kind said once (the first time it happens), for a warning Event or line."""
        said: list[str] = []
        if self.long_lines and "long" not in self._warned:
            self._warned.add("long")
            said.append(f"ignored a log line longer than {MAX_LINE_CHARS} characters (metrics lines must be shorter)")
        if self.dropped_names and "names" not in self._warned:
            self._warned.add("names")
            example = sorted(self.dropped_names)[0]
            said.append(f"ignored metric names beyond the first {MAX_NAMES} distinct ones in the log (e.g. "
                        f"{example!r}); the job's objectives and spec.metrics are always read")
        if self.bad_steps and "steps" not in self._warned:
            self._warned.add("steps")
            said.append(f"ignored a {self.step_metric} value that is not a whole number from 0 to 2^63-1 "
                        "(spec.metricsSource.stepMetric names the step)")
        return said

    # -- one line ----------------------------------------------------------------------------------------

    def _pairs(self, line: str) -> dict[str, float]:
        text = line.strip()
        if self.format != "katib" and text.startswith("{"):
            found = _json_pairs(text)
            if found is not None or self.format == "json":
                return found or {}
        if self.format == "json":
            return {}
        pairs: dict[str, float] = {}
        for match in self._pattern.finditer(text):
            value = _number(match.group(2))
            if value is not None and match.group(1):
                pairs[metric_name(match.group(1))] = value
        return pairs

    def _kept(self, pairs: dict[str, float]) -> dict[str, float]:
        """The pairs' values but the step's, without names beyond the first MAX_NAMES (counted instead)."""
        kept: dict[str, float] = {}
        for name, value in pairs.items():
            if name == self.step_metric:
                continue
            if name in self.names or name in self.always:
                kept[name] = value
            elif len(self.names) < MAX_NAMES:
                self.names.add(name)
                kept[name] = value
            else:
                self.dropped_values += 1
                if len(self.dropped_names) < MAX_NAMES:
                    self.dropped_names.add(name)
        return kept

    def _step(self, value: float, current: int | None) -> int | None:
        if math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_STEP:
            return int(value)
        self.bad_steps += 1
        return current


def _json_pairs(text: str) -> dict[str, float] | None:
    """A JSON object's numeric values (numbers, or strings that are numbers); None when the line is no object."""
    try:
        data = json.loads(text)
    except ValueError:  # json.JSONDecodeError, or a number too large for float()
        return None
    if not isinstance(data, dict):
        return None
    pairs: dict[str, float] = {}
    for name, raw in data.items():
        if isinstance(raw, bool):
            continue
        value = _number(raw) if isinstance(raw, int | float | str) else None
        if value is not None:
            pairs[metric_name(name)] = value
    return pairs


def metric_name(raw: str) -> str:
    """A name as a ktune metric name: `Validation-accuracy` -> `validation_accuracy`, `1st` -> `m_1st`."""
    name = re.sub(r"[^a-z0-9_]+", "_", raw.strip().lower()).strip("_")
    return name if re.match(r"[a-z_]", name[:1]) else f"m_{name}"


def _number(raw: str | float) -> float | None:
    """A value as a float (NaN and infinities as Python spells them); None when it is no number."""
    try:
        return float(raw)
    except (ValueError, OverflowError):
        return None
