"""A trainer that misbehaves as told by its `mode` parameter (KTUNE_PARAM_MODE), for the fault tests.

ok: serves metrics and reports score 0.5; crash: raises (exit 1, traceback in the log); nan: reports NaN
as the objective; oom: exits 137 as when SIGKILLed (, which the test node agent reports as OOMKilled, as the
kubelet does for the OOM killer); missing: serves and reports only `loss`, not the objective; silent: never serves
metrics and never ends.
"""

import json
import os
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, start_http_server


def serve_metrics(metric: str, value: float) -> None:
    registry = CollectorRegistry()
    Gauge("ktune_trial_metric", "trial metric", ["metric"], registry=registry).labels(metric).set(value)
    Gauge("ktune_trial_step", "step", registry=registry).set(1)
    start_http_server(int(os.environ["KTUNE_METRICS_PORT"]), addr=os.environ["KTUNE_METRICS_HOST"],
                      registry=registry)


def main() -> None:
    mode = os.environ["KTUNE_PARAM_MODE"]
    if mode == "silent":
        time.sleep(3600)
    # `missing` never mentions the objective: the final metrics are the last served values under its result.
    if mode == "missing":
        serve_metrics("loss", 0.1)
    else:
        serve_metrics("score", 0.5)
    time.sleep(1.0)
    if mode == "crash":
        raise RuntimeError("the trainer crashed on purpose")
    if mode == "oom":
        os._exit(137)  # what a SIGKILLed process exits with; the test node agent reads 137 as OOMKilled
    result = {"ok": {"score": 0.5}, "nan": {"score": float("nan")}, "missing": {"loss": 0.1}}[mode]
    Path(os.environ["KTUNE_RESULT_PATH"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
