"""What a job's hours should be, read back from its Trials: each Trial's startTime and finishTime have one second
of precision, while the operator counts hours from its own clock, so each trial's running time is known only to
within a second either way (a tolerance in percent fails whenever the trials are short)."""

from datetime import datetime
from typing import Any

SECONDS_PER_HOUR = 3600.0
ROUNDING = 1e-6
"""The status rounds hours to 6 decimals."""


def seconds(trial: dict[str, Any]) -> float:
    """The trial's running time as its Trial status states it (whole seconds)."""
    start, finish = (datetime.fromisoformat(trial["status"][key].replace("Z", "+00:00"))
                     for key in ("startTime", "finishTime"))
    return (finish - start).total_seconds()


def assert_hours_match(used: float, trials: list[dict[str, Any]], per_hour: float) -> None:
    """`used` (the status's cpuHoursUsed or gpuHoursUsed) is the trials' running time times `per_hour` (the pods x
    requests of one trial), within one second per Trial timestamp."""
    stated = sum(seconds(trial) for trial in trials)
    low = max(0.0, stated - len(trials)) * per_hour / SECONDS_PER_HOUR - ROUNDING
    high = (stated + len(trials)) * per_hour / SECONDS_PER_HOUR + ROUNDING
    assert low <= used <= high, f"hours used {used}, the Trials' times give {low:.6f}..{high:.6f}"
