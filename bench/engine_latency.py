"""Engine suggest latency (`Engine.ask`) and rebuild time at 100 / 1,000 / 5,000 finished trials, per sampler.

Pure engine, synthetic objective (no processes, no cluster). For each sampler and each size N the engine is
built from N finished trials (`Engine(spec, records)`: what the operator does when it starts or restarts),
then one warm-up and `--asks` timed trials are asked and told; the table shows the rebuild seconds and the median ask
milliseconds.

History: samplers that look only at parameters and values (tpe, random, qmc, gp) get N trials with seeded
random parameters and their synthetic objective. CMA-ES and NSGA-II keep their search state on the trials
(`system_attrs`), so their history is made by driving that sampler itself, ask after tell, up to N.

A sampler stops at its `--budget-seconds` (or when the next size is predicted, from the last ask time
growing at least linearly, to overrun it); sizes it did not reach are reported as not reached.

    python -m bench.engine_latency
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.results import machine, markdown_table, write_results
from ktune.algorithms import load_tuningjob
from ktune.engine import Engine, TrialRecord, TrialState
from ktune.spec import JobSpec

SAMPLERS = ("random", "tpe", "qmc", "cmaes", "nsga2", "gp")
DRIVEN = ("cmaes", "nsga2")
JOB: dict[str, Any] = {
    "apiVersion": "ktune.dev/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "engine-latency"},
    "spec": {
        "objective": {"metric": "ndcg_at_10", "direction": "maximize"},
        "parameters": [
            {"name": "learning_rate", "type": "float", "low": 1.0e-5, "high": 1.0e-2, "log": True},
            {"name": "warmup_ratio", "type": "float", "low": 0.0, "high": 0.2},
            {"name": "dropout", "type": "float", "low": 0.0, "high": 0.3},
            {"name": "epochs", "type": "int", "low": 1, "high": 4},
        ],
        "sampler": {"name": "tpe", "seed": 7},
        "budget": {"maxTrials": 100000, "parallelism": 1},
        "trial": {"template": {"spec": {"containers": [{"name": "trainer", "command": ["train"]}]}}},
    },
}


def spec_for(sampler: str) -> JobSpec:
    job = copy.deepcopy(JOB)
    job["spec"]["sampler"]["name"] = sampler
    return load_tuningjob(job).spec


def quality(params: dict[str, Any]) -> float:
    """A smooth synthetic NDCG, best near learning_rate 1e-3, warmup 0.1, dropout 0.1, 3 epochs."""
    return (0.9 - 0.05 * (math.log10(params["learning_rate"]) + 3) ** 2 - abs(params["warmup_ratio"] - 0.1)
            - abs(params["dropout"] - 0.1) - 0.02 * abs(params["epochs"] - 3))


def random_history(count: int, seed: int) -> list[TrialRecord]:
    rng = random.Random(seed)
    records = []
    for number in range(count):
        params = {"learning_rate": 10 ** rng.uniform(-5, -2), "warmup_ratio": rng.uniform(0, 0.2),
                  "dropout": rng.uniform(0, 0.3), "epochs": rng.randint(1, 4)}
        records.append(TrialRecord(number=number, params=params, state=TrialState.SUCCEEDED, values=[quality(params)],
                                   metrics={"ndcg_at_10": quality(params)}, started_at=float(number),
                                   finished_at=number + 0.5))
    return records


def ask_and_tell(engine: Engine) -> float:
    """Seconds the ask took; the trial is then told its synthetic value."""
    now = float(len(engine.records))
    tick = time.perf_counter()
    record = engine.ask(now=now)
    seconds = time.perf_counter() - tick
    engine.tell_succeeded(record.number, {"ndcg_at_10": quality(record.params)}, now=now + 0.5)
    return seconds


def measure(spec: JobSpec, history: list[TrialRecord], asks: int) -> dict[str, float]:
    tick = time.perf_counter()
    engine = Engine(spec, history)
    rebuild = time.perf_counter() - tick
    ask_and_tell(engine)  # warm-up: the first ask of a process pays one-off imports (scipy's QMC, the GP code)
    seconds = [ask_and_tell(engine) for _ in range(asks)]
    return {"rebuild_seconds": rebuild, "ask_ms_median": 1000 * statistics.median(seconds),
            "ask_ms_max": 1000 * max(seconds)}


def bench_sampler(sampler: str, sizes: list[int], asks: int, budget: float, seed: int) -> dict[str, Any]:
    spec = spec_for(sampler)
    started = time.perf_counter()
    points: dict[str, Any] = {}
    driver = Engine(spec) if sampler in DRIVEN else None
    last: tuple[int, float] | None = None
    for size in sizes:
        left = budget - (time.perf_counter() - started)
        if last is not None:
            # Ask time at `size`, assuming linear growth; driving there costs about half that per ask on the way.
            predicted = last[1] / 1000 * size / last[0] * (asks + ((size - last[0]) / 2 if driver else 0))
            if predicted > left:
                points[str(size)] = {"reached": False, "predicted_seconds_needed": predicted}
                continue
        if left <= 0:
            points[str(size)] = {"reached": False}
            continue
        if driver is not None:
            while len(driver.records) < size and time.perf_counter() - started < budget:
                ask_and_tell(driver)
            if len(driver.records) < size:
                points[str(size)] = {"reached": False, "driven_to": len(driver.records)}
                continue
            history = [copy.deepcopy(record) for record in driver.records[:size]]
        else:
            history = random_history(size, seed)
        point = measure(spec, history, asks)
        points[str(size)] = {"reached": True, **point}
        last = (size, point["ask_ms_median"])
    return {"history": "driven" if driver else "random", "seconds": time.perf_counter() - started, "sizes": points}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--asks", type=int, default=3, help="asks timed at each size")
    parser.add_argument("--budget-seconds", type=float, default=150.0, help="per sampler")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the GP sampler fits with torch)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--name", default="engine_latency")
    return parser.parse_args(argv)


def growth(sizes: dict[str, Any], key: str) -> str:
    """The exponent k of `key` ~ N^k between the first and last size reached (1 = linear)."""
    reached = [(int(n), p[key]) for n, p in sizes.items() if p.get("reached")]
    if len(reached) < 2 or reached[0][1] <= 0:
        return "-"
    (n0, t0), (n1, t1) = reached[0], reached[-1]
    return f"{math.log(t1 / t0) / math.log(n1 / n0):.2f}"


def table(result: dict[str, Any]) -> str:
    sizes = result["settings"]["sizes"]
    headers = ["sampler", "history"]
    for size in sizes:
        headers += [f"ask ms @{size}", f"rebuild s @{size}"]
    headers += ["ask-time exponent k (t ~ N^k)", "rebuild exponent k"]
    rows = []
    for sampler, data in result["samplers"].items():
        row: list[Any] = [sampler, data["history"]]
        for size in sizes:
            point = data["sizes"][str(size)]
            row += [point["ask_ms_median"], point["rebuild_seconds"]] if point["reached"] else ["not reached", "-"]
        row += [growth(data["sizes"], "ask_ms_median"), growth(data["sizes"], "rebuild_seconds")]
        rows.append(row)
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.sizes.split(",")]
    settings = {"sizes": sizes, "asks": args.asks, "budget_seconds": args.budget_seconds, "seed": args.seed,
                "threads": args.threads}
    result: dict[str, Any] = {"machine": machine(), "settings": settings, "samplers": {}}
    for sampler in args.samplers.split(","):
        result["samplers"][sampler] = bench_sampler(sampler, sizes, args.asks, args.budget_seconds, args.seed)
        print(sampler, result["samplers"][sampler], flush=True)
    markdown = table(result)
    write_results(args.name, result, markdown, args.out_dir)
    print(markdown)


if __name__ == "__main__":
    main()
