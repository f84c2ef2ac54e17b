"""Data-parallel ktune-trainer on CPU: 2 processes x 1 thread (torchrun, DDP over gloo) vs 1 process x 2 threads.

Both run the real console script, `ktune-trainer train`, on the same synthetic data with the same flags
(tiny-bert, listwise loss, the same global batch), alternating, `--repeats` times with seeds 42, 43, ...
(the same seeds for both), so that load on a shared machine hits both alike and the spread of the final
NDCG over seeds shows the noise. Threads are set with OMP_NUM_THREADS / MKL_NUM_THREADS. A third setup,
1 process x 1 thread, is the reference for what a second core adds.

- pairs/s: the trainer's own `pairs_per_second` (all ranks' training pairs over rank 0's time inside
  optimizer steps, which includes DDP's gradient all-reduce); the best run of each counts.
- wall s: the whole command, start-up (imports, tokenizer, process group) included; the best counts.
- NDCG@10: the final validation `ndcg_at_10` and `test_ndcg_at_10`, mean and range over the seeds.

    python -m bench.trainer_distributed --queries 120 --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import machine, markdown_table, write_results

BIN = Path(sys.executable).parent
SETUPS = {  # name: (command prefix, threads per process)
    "2 processes x 1 thread": ([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2"], 1),
    "1 process x 2 threads": ([], 2),
    "1 process x 1 thread": ([], 1),  # the reference: what one core does alone under the same load
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=120, help="synthetic queries (about 30 pairs each)")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (pairs per step, all ranks)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setup, seeds 42, 43, ...")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--name", default="trainer_distributed")
    return parser.parse_args(argv)


def run_once(args: argparse.Namespace, setup: str, seed: int, scratch: Path) -> dict[str, float]:
    """One `ktune-trainer train` under the setup; its result JSON plus the command's wall time."""
    prefix, threads = SETUPS[setup]
    result_path = scratch / f"{setup.replace(' ', '_')}-{seed}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "KTUNE_METRICS_HOST": "127.0.0.1", "KTUNE_METRICS_PORT": "0", "KTUNE_RESULT_PATH": str(result_path)}
    command = [*prefix, str(BIN / "ktune-trainer"), "train", "--data",
               f"synthetic:queries={args.queries},seed={args.data_seed}", "--model", "tiny-bert", "--loss", "listwise",
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
               "--epochs", str(args.epochs), "--seed", str(seed), "--device", "cpu"]
    tick = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - tick
    if done.returncode != 0:
        raise SystemExit(f"{setup} failed with exit {done.returncode}:\n{done.stderr[-3000:]}")
    result = json.loads(result_path.read_text())
    return {"pairs_per_second": result["pairs_per_second"], "ndcg_at_10": result["ndcg_at_10"],
            "test_ndcg_at_10": result["test_ndcg_at_10"], "wall_seconds": wall}


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "best_pairs_per_second": max(run["pairs_per_second"] for run in runs),
        "best_wall_seconds": min(run["wall_seconds"] for run in runs),
        **{f"{key}_{stat}": fn([run[key] for run in runs]) for key in ("ndcg_at_10", "test_ndcg_at_10")
           for stat, fn in (("mean", statistics.fmean), ("min", min), ("max", max))},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {setup: [] for setup in SETUPS}
    with tempfile.TemporaryDirectory(prefix="trainer-distributed-") as scratch:
        for repeat in range(args.repeats):
            for setup in SETUPS:
                runs[setup].append(run_once(args, setup, 42 + repeat, Path(scratch)))
    summaries = {setup: summary(results) for setup, results in runs.items()}
    ddp, single, _reference = (summaries[setup] for setup in SETUPS)
    return {
        "machine": machine(),
        "settings": {key: value for key, value in vars(args).items() if key not in ("out_dir", "name")},
        "runs": runs, "summary": summaries,
        "ratio_2x1_over_1x2": {"pairs_per_second": ddp["best_pairs_per_second"] / single["best_pairs_per_second"],
                               "wall_seconds": ddp["best_wall_seconds"] / single["best_wall_seconds"],
                               "ndcg_at_10": ddp["ndcg_at_10_mean"] / single["ndcg_at_10_mean"],
                               "test_ndcg_at_10": ddp["test_ndcg_at_10_mean"] / single["test_ndcg_at_10_mean"]},
    }


def table(result: dict[str, Any]) -> str:
    ddp, single, reference = (result["summary"][setup] for setup in SETUPS)
    ratio = result["ratio_2x1_over_1x2"]

    def spread(values: dict[str, float], key: str) -> str:
        return f"{values[key + '_mean']:.4f} ({values[key + '_min']:.4f}–{values[key + '_max']:.4f})"

    rows = [
        ["training pairs/s (best)", ddp["best_pairs_per_second"], single["best_pairs_per_second"],
         ratio["pairs_per_second"], reference["best_pairs_per_second"]],
        ["wall s, whole command (best)", ddp["best_wall_seconds"], single["best_wall_seconds"], ratio["wall_seconds"],
         reference["best_wall_seconds"]],
        ["validation NDCG@10, mean (range)", spread(ddp, "ndcg_at_10"), spread(single, "ndcg_at_10"),
         ratio["ndcg_at_10"], spread(reference, "ndcg_at_10")],
        ["test NDCG@10, mean (range)", spread(ddp, "test_ndcg_at_10"), spread(single, "test_ndcg_at_10"),
         ratio["test_ndcg_at_10"], spread(reference, "test_ndcg_at_10")],
    ]
    names = list(SETUPS)
    return markdown_table(["", names[0], names[1], "2x1 / 1x2", names[2]], rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    markdown = table(result)
    write_results(args.name, result, markdown, args.out_dir)
    print(markdown)


if __name__ == "__main__":
    main()
