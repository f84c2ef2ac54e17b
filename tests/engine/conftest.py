"""Small TuningJobs and a synthetic objective for engine tests (no processes, no files)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from ktune.algorithms import load_local_tuningjob
from ktune.engine import TrialState
from ktune.spec import JobSpec

# The GP sampler fits with torch; keep it to one thread on the shared test machine.
torch.set_num_threads(1)

BASE_JOB: dict[str, Any] = {
    "apiVersion": "ktune.dev/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "engine-test"},
    "spec": {
        "objective": {"metric": "ndcg_at_10", "direction": "maximize"},
        "metrics": ["mrr_at_10"],
        "parameters": [
            {"name": "learning_rate", "type": "float", "low": 1.0e-5, "high": 1.0e-2, "log": True},
            {"name": "epochs", "type": "int", "low": 1, "high": 4},
            {"name": "warmup_ratio", "type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
            {"name": "batch_size", "type": "categorical", "choices": [16, 32, 64]},
        ],
        "sampler": {"name": "tpe", "seed": 7},
        "budget": {"maxTrials": 30, "parallelism": 2},
        "trial": {"template": {"spec": {"containers": [{"name": "trainer", "command": ["train"]}]}}},
    },
}


def quality(params: dict[str, Any]) -> float:
    """A smooth synthetic NDCG: best near learning_rate 1e-3, more epochs, warmup 0.1, batch 32."""
    return (0.9 - 0.1 * (math.log10(params["learning_rate"]) + 3) ** 2 + 0.02 * params["epochs"]
            - abs(params["warmup_ratio"] - 0.1) - 0.01 * abs(params["batch_size"] - 32) / 16)


def latency(params: dict[str, Any]) -> float:
    """A synthetic cost that grows with epochs and shrinks with batch size."""
    return 10.0 * params["epochs"] + 640.0 / params["batch_size"]


@pytest.fixture
def make_spec() -> Callable[..., JobSpec]:
    """A JobSpec from BASE_JOB with `spec` fields replaced (`multi=True` swaps in two objectives)."""

    def build(multi: bool = False, **spec_fields: Any) -> JobSpec:
        job = copy.deepcopy(BASE_JOB)
        if multi:
            del job["spec"]["objective"]
            job["spec"]["objectives"] = [{"metric": "ndcg_at_10", "direction": "maximize"},
                                         {"metric": "latency_ms", "direction": "minimize"}]
        job["spec"].update(copy.deepcopy(spec_fields))
        return load_local_tuningjob(job).spec  # gp too: its engine tests run where torch is

    return build


def finish_trial(engine: Any, number: int, params: dict[str, Any], steps: int = 3) -> TrialState:
    """Run one synthetic trial: report `steps` intermediate values, then prune, fail or succeed it."""
    final = {"ndcg_at_10": quality(params), "latency_ms": latency(params), "mrr_at_10": quality(params) / 2}
    for step in range(steps):
        partial = {name: value * (step + 1) / steps for name, value in final.items()}
        if engine.report(number, step, partial):
            return engine.tell_pruned(number, now=float(number) + 0.5).state
        if number % 5 == 4:  # every fifth trial crashes after its first report
            return engine.tell_failed(number, "Error", "exit code 1", now=float(number) + 0.5).state
    return engine.tell_succeeded(number, final, now=float(number) + 0.5).state


@pytest.fixture
def drive() -> Callable[[Any, int], None]:
    """Ask and finish `n` trials one after another on an engine."""

    def run(engine: Any, n: int) -> None:
        for _ in range(n):
            record = engine.ask(now=float(len(engine.records)))
            finish_trial(engine, record.number, record.params)

    return run
