"""Run inside an install of ktune (not imported by pytest): every sampler the cluster's rules allow drives a job
through ktune's Engine, single- and (where allowed) multi-objective; prints one JSON line of what it found.

This is what the operator does with a TuningJob, so a sampler whose imports are missing here fails here.
"""

import importlib.util
import json
import sys

from ktune.algorithms import LOCAL_RULES, RULES, load_tuningjob
from ktune.engine import Engine

PARAMETERS = [
    {"name": "learning_rate", "type": "float", "low": 1.0e-5, "high": 1.0e-2, "step": 1.0e-5},
    {"name": "epochs", "type": "int", "low": 1, "high": 4},
    {"name": "batch_size", "type": "categorical", "choices": [16, 32, 64]},
]
OBJECTIVES = {"ndcg_at_10": "maximize", "latency_ms": "minimize"}


def job(sampler: str, multi: bool) -> dict:
    objectives = [{"metric": m, "direction": d} for m, d in OBJECTIVES.items()]
    return {"apiVersion": "ktune.dev/v1alpha1", "kind": "TuningJob", "metadata": {"name": f"install-{sampler}"},
            "spec": {**({"objectives": objectives} if multi else {"objective": objectives[0]}),
                     "parameters": PARAMETERS, "sampler": {"name": sampler, "seed": 3},
                     "budget": {"maxTrials": 12, "parallelism": 1},
                     "trial": {"template": {"spec": {"containers": [{"name": "t", "command": ["train"]}]}}}}}


def drive(sampler: str, multi: bool) -> int:
    """Ask and tell 8 trials (past every sampler's startup trials); the number that succeeded."""
    engine = Engine(load_tuningjob(job(sampler, multi)).spec)
    for _ in range(8):
        record = engine.ask(now=float(len(engine.records)))
        value = {"ndcg_at_10": record.params["epochs"] / 4 - record.params["learning_rate"],
                 "latency_ms": float(record.params["batch_size"])}
        engine.tell_succeeded(record.number, value, now=float(record.number) + 0.5)
    return sum(1 for record in engine.records if record.state == "Succeeded")


def main() -> None:
    found = {"torch": importlib.util.find_spec("torch") is not None, "samplers": {},
             "cluster_refuses": dict(RULES.unavailable_samplers),
             "ktune_run_refuses": dict(LOCAL_RULES.unavailable_samplers)}
    for name in RULES.sampler_names:
        found["samplers"][name] = drive(name, multi=False)
        if name not in RULES.single_objective_samplers:
            found["samplers"][f"{name} (2 objectives)"] = drive(name, multi=True)
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    main()
