"""Polling helper for tests against the real API server, where everything converges asynchronously."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, timeout: float = 60.0, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy and return that; fail naming ``what`` after ``timeout``.

    Exceptions from ``check`` count as "not yet" (the last one is shown when time runs out).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as error:  # not converged yet; shown if it never does
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)
