"""`ktune run --warm-start DIR`: an earlier local run's trials, read from its run directory.

DIR is what an earlier `ktune run` wrote (./ktune-runs/<job>/ by default): its `run.json` holds the
job's spec (whose search space decides compatibility) and its Optuna journal every trial; the engine
rebuilt over that journal gives the trial records exactly as the earlier run left them.
"""

import json
from pathlib import Path

import optuna
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend

from ktune.algorithms import load_local_tuningjob
from ktune.engine import Engine
from ktune.engine.warm_start import WarmStartSource
from ktune.local.run_directory import JOURNAL, RUN_JSON, RunDirectoryError
from ktune.spec import API_VERSION, SpecError


def read_run(path: Path) -> WarmStartSource:
    """The trials of the run in `path`; RunDirectoryError naming the file when it is no run directory."""
    run_json, journal = path / RUN_JSON, path / JOURNAL
    if not run_json.is_file() or not journal.is_file():
        raise RunDirectoryError(f"warm start from {path}: not a ktune run directory (no {RUN_JSON} and {JOURNAL}; "
                                "pass the directory an earlier `ktune run` wrote, e.g. ktune-runs/<job>)")
    try:
        saved = json.loads(run_json.read_text())
        job = load_local_tuningjob({"apiVersion": API_VERSION, "kind": "TuningJob",
                                    "metadata": {"name": saved["tuningjob"]}, "spec": saved["spec"]})
    except (ValueError, KeyError, TypeError) as error:
        problems = "; ".join(error.problems) if isinstance(error, SpecError) else str(error)
        raise RunDirectoryError(f"warm start from {path}: {run_json} is damaged ({problems})") from None
    # Copied into memory: opening the journal itself would append to the earlier run's files.
    storage = InMemoryStorage()
    optuna.copy_study(from_study_name=job.name, from_storage=JournalStorage(JournalFileBackend(str(journal))),
                      to_storage=storage)
    engine = Engine(job.spec, storage=storage, study_name=job.name)
    return WarmStartSource(label=str(path), parameters=job.spec.parameters, records=engine.records)
