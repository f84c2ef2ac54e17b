"""Search efficiency on the real trainer: best validation NDCG@10 vs. trials and vs. trial-seconds.

Methods: grid search over learning rate × batch size (the classic approach), random search, TPE, TPE +
median pruning, TPE + hyperband. Each method runs `--trials` trials for each of `--seeds` sampler seeds
through `ktune.engine.Engine` (ask, report each epoch's validation metrics, tell), training tiny-bert
in-process with `ktune_trainer.training.train` on the same synthetic data (same data seed, same training
seed: only the search differs). A pruned trial stops at the epoch its pruner said so.

Reported per method: best validation NDCG@10 after n trials and the trial-seconds spent (mean over seeds),
the test NDCG@10 of the best trial, and the headline: trials and trial-seconds each method needs to reach
random search's best after all its trials (mean over seeds).

    python -m bench.search_efficiency                       # the issue's scale: 32 trials, 3 seeds
    python -m bench.search_efficiency --trials 16 --workers 2
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench.results import machine, markdown_table, write_results

METHODS = ("grid", "random", "tpe", "tpe+median", "tpe+hyperband")
BATCH_SIZES = (8, 16, 32, 64)
LR_LOW, LR_HIGH = 1e-4, 3e-2
METRIC = "ndcg_at_10"


class Pruned(Exception):
    """The pruner stopped the trial."""


def grid_learning_rates(trials: int) -> list[float]:
    count = max(2, trials // len(BATCH_SIZES))
    return [float(f"{LR_LOW * (LR_HIGH / LR_LOW) ** (i / (count - 1)):.3g}") for i in range(count)]


def job_for(method: str, seed: int, trials: int, epochs: int) -> dict[str, Any]:
    learning_rate: dict[str, Any] = {"name": "learning_rate", "type": "float", "low": LR_LOW, "high": LR_HIGH,
                                     "log": True}
    if method == "grid":
        learning_rate = {"name": "learning_rate", "type": "categorical", "choices": grid_learning_rates(trials)}
    sampler = {"grid": "grid", "random": "random"}.get(method, "tpe")
    spec: dict[str, Any] = {
        "objective": {"metric": METRIC, "direction": "maximize"},
        "parameters": [learning_rate, {"name": "batch_size", "type": "categorical", "choices": list(BATCH_SIZES)}],
        "sampler": {"name": sampler, "seed": seed},
        "budget": {"maxTrials": trials, "parallelism": 1},
        "trial": {"template": {"spec": {"containers": [{"name": "trainer", "command": ["ktune-trainer"]}]}}},
    }
    if method == "tpe+median":
        spec["pruner"] = {"name": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 1}}
    if method == "tpe+hyperband":
        spec["pruner"] = {"name": "hyperband", "options": {"min_resource": 1, "max_resource": epochs,
                                                             "reduction_factor": 3}}
    return {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob", "metadata": {"name": f"search-{seed}"},
            "spec": spec}


def run_method(task: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
    """One method with one seed: every trial's outcome, value, test NDCG@10 and seconds."""
    import torch

    from ktune.algorithms import load_tuningjob
    from ktune.engine import Engine
    from ktune_trainer.data import load_data
    from ktune_trainer.training import NonFiniteLoss, TrainingConfig, train

    method, seed, settings = task
    torch.set_num_threads(1)
    data = load_data(f"synthetic:queries={settings['queries']},seed={settings['data_seed']}")
    engine = Engine(load_tuningjob(job_for(method, seed, settings["trials"], settings["epochs"])).spec)
    trials = []
    for _ in range(settings["trials"]):
        if engine.stop_decision(float(len(engine.records))) is not None:
            break
        record = engine.ask(now=float(record_count := len(engine.records)))
        config = TrainingConfig(
            learning_rate=record.params["learning_rate"], batch_size=record.params["batch_size"],
            epochs=settings["epochs"], max_length=settings["max_length"], max_train_pairs=settings["max_train_pairs"],
            seed=42, device="cpu",
        )

        def report(step: int, metrics: dict[str, float], number: int = record.number) -> None:
            if engine.report(number, step, metrics):
                raise Pruned

        tick = time.perf_counter()
        outcome, value, test = "succeeded", None, None
        try:
            result = train(config, data, report)
            value, test = result[METRIC], result[f"test_{METRIC}"]
            engine.tell_succeeded(record.number, result, now=record_count + 0.5)
        except Pruned:
            outcome = "pruned"
            engine.tell_pruned(record.number, now=record_count + 0.5)
        except NonFiniteLoss as error:
            outcome = "failed"
            engine.tell_failed(record.number, "Error", str(error), now=record_count + 0.5)
        trials.append({"number": record.number, "params": record.params, "outcome": outcome, "value": value,
                       "test_ndcg_at_10": test, "seconds": time.perf_counter() - tick})
    return {"method": method, "seed": seed, "trials": trials}


def curve(trials: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Best value so far and cumulative seconds after each trial (a trial without a value keeps the best)."""
    best, spent, bests, seconds = -math.inf, 0.0, [], []
    for trial in trials:
        if trial["value"] is not None:
            best = max(best, trial["value"])
        spent += trial["seconds"]
        bests.append(best)
        seconds.append(spent)
    return bests, seconds


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    finished = [trial for trial in trials if trial["value"] is not None]
    return max(finished, key=lambda trial: trial["value"]) if finished else None


def to_reach(trials: list[dict[str, Any]], target: float) -> tuple[int, float] | None:
    """(trials, trial-seconds) until the best value first reaches `target`; None if it never does."""
    bests, seconds = curve(trials)
    for index, best in enumerate(bests):
        if best >= target - 1e-12:
            return index + 1, seconds[index]
    return None


def summarise(runs: list[dict[str, Any]], checkpoints: list[int]) -> dict[str, Any]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    random_runs = by_method.get("random", [])
    target = statistics.fmean(curve(run["trials"])[0][-1] for run in random_runs) if random_runs else None
    summary = {}
    for method, method_runs in by_method.items():
        curves = [curve(run["trials"]) for run in method_runs]
        points = {}
        for n in checkpoints:
            reached = [(bests[n - 1], seconds[n - 1]) for bests, seconds in curves if len(bests) >= n]
            if reached:
                points[str(n)] = {"best_mean": statistics.fmean(b for b, _ in reached),
                                  "seconds_mean": statistics.fmean(s for _, s in reached)}
        bests = [best_trial(run["trials"]) for run in method_runs]
        reach = [to_reach(run["trials"], target) for run in method_runs] if target is not None else []
        got = [r for r in reach if r is not None]
        summary[method] = {
            "seeds": len(method_runs), "checkpoints": points,
            "best_validation_mean": statistics.fmean(b["value"] for b in bests if b),
            "best_test_mean": statistics.fmean(b["test_ndcg_at_10"] for b in bests if b),
            "pruned": sum(t["outcome"] == "pruned" for run in method_runs for t in run["trials"]),
            "failed": sum(t["outcome"] == "failed" for run in method_runs for t in run["trials"]),
            "total_seconds_mean": statistics.fmean(c[1][-1] for c in curves),
            "reach_random_best": {"target": target, "seeds_reached": len(got),
                                  "trials_mean": statistics.fmean(r[0] for r in got) if got else None,
                                  "seconds_mean": statistics.fmean(r[1] for r in got) if got else None},
        }
    return summary


def table(result: dict[str, Any]) -> str:
    checkpoints = result["settings"]["checkpoints"]
    headers = ["method"] + [f"best val @{n} trials (trial-s)" for n in checkpoints] + [
        "test NDCG@10 of best", "pruned", "trials to random's best", "trial-s to random's best"]
    rows = []
    for method in METHODS:
        data = result["summary"].get(method)
        if data is None:
            continue
        row: list[Any] = [method]
        for n in checkpoints:
            point = data["checkpoints"].get(str(n))
            row.append(f"{point['best_mean']:.4f} ({point['seconds_mean']:.0f})" if point else "-")
        reach = data["reach_random_best"]
        row += [data["best_test_mean"], data["pruned"],
                f"{reach['trials_mean']:.1f} ({reach['seeds_reached']}/{data['seeds']} seeds)" if reach["trials_mean"]
                else f"not reached (0/{data['seeds']})",
                f"{reach['seconds_mean']:.0f}" if reach["seconds_mean"] else "-"]
        rows.append(row)
    return markdown_table(headers, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--queries", type=int, default=80, help="synthetic queries (70/15/15 split)")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train-pairs", type=int, default=240)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="parallel runs; 1 = in-process")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--name", default="search_efficiency")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = {"trials": args.trials, "queries": args.queries, "data_seed": args.data_seed, "epochs": args.epochs,
                "max_train_pairs": args.max_train_pairs, "max_length": args.max_length,
                "seeds": [int(s) for s in args.seeds.split(",")], "workers": args.workers}
    settings["checkpoints"] = sorted({n for n in (4, 8, 16, 32, args.trials) if n <= args.trials})
    tasks = [(method, seed, settings) for seed in settings["seeds"] for method in args.methods.split(",")]
    started, context, runs = time.perf_counter(), machine(), []
    with multiprocessing.get_context("spawn").Pool(args.workers) if args.workers > 1 else nullcontext() as pool:
        results = pool.imap_unordered(run_method, tasks, chunksize=1) if pool else map(run_method, tasks)
        for run in results:
            runs.append(run)  # written after every run: a partial matrix survives an interrupted benchmark
            result = {"machine": context, "settings": settings, "wall_seconds": time.perf_counter() - started,
                      "complete": len(runs) == len(tasks), "summary": summarise(runs, settings["checkpoints"]),
                      "runs": runs}
            markdown = table(result)
            write_results(args.name, result, markdown, args.out_dir)
    print(markdown)


if __name__ == "__main__":
    main()
