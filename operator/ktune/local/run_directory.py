"""A local run's directory: its Optuna journal, a small state file, and a folder per trial.

`optuna-journal.log` is the run's source of truth: the engine keeps its study there, every trial
with its parameters, state, intermediate values and (as a user attribute) ktune's record of it.
Optuna appends to it as things happen, so a crash loses nothing that was decided; `--resume`
hands it back to the engine, which rebuilds every trial record from it. optuna-dashboard opens it.
`run.json` holds what is not the study's: the job's spec when the run started (a resume refuses a
changed spec), the start time (for activeDeadlineSeconds) and the attempts each trial took.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from ktune.local.results import write_json_atomically
from ktune.spec import TuningJob

RUN_JSON = "run.json"
JOURNAL = "optuna-journal.log"
TRIALS_DIR = "trials"


class RunDirectoryError(ValueError):
    """The output directory does not fit the request (a run already there, nothing to resume...)."""


@dataclass(frozen=True)
class RunState:
    """What a run starts from: the study's storage (empty, or the journal to resume), attempts, start time."""

    attempts: dict[int, int]
    storage: JournalStorage
    started_at: float


class RunDirectory:
    def __init__(self, path: Path):
        self.path = path
        self.started_at = time.time()
        self._header: dict[str, Any] = {}

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL

    def trial_dir(self, number: int) -> Path:
        return self.path / TRIALS_DIR / f"{number:04d}"

    def open(self, job: TuningJob, resume: bool) -> RunState:
        """Start a new run here, or load the one to resume; RunDirectoryError when that does not fit."""
        state_file = self.path / RUN_JSON
        if resume:
            return self._load(job, state_file)
        if state_file.exists():
            raise RunDirectoryError(
                f"{self.path} already holds a run of this job: continue it with --resume, "
                "or start a new one with --output DIR (or delete the directory)"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.journal_path.unlink(missing_ok=True)
        self._header = {"tuningjob": job.name, "startedAt": self.started_at, "spec": job.manifest.get("spec")}
        self.save({})
        return RunState({}, self._storage(), self.started_at)

    def _load(self, job: TuningJob, state_file: Path) -> RunState:
        if not state_file.exists() or not self.journal_path.exists():
            raise RunDirectoryError(
                f"nothing to resume in {self.path} (no {RUN_JSON} and {JOURNAL}): start the run without --resume"
            )
        try:
            saved = json.loads(state_file.read_text())
            attempts = {int(number): count for number, count in saved.get("attempts", {}).items()}
            started_at = float(saved["startedAt"])
        except (ValueError, KeyError, TypeError) as error:
            raise RunDirectoryError(f"{state_file} is damaged ({error}); start a new run with --output DIR") from error
        changed = _changed_fields(saved.get("spec") or {}, job.manifest.get("spec") or {})
        if saved.get("tuningjob") != job.name or changed:
            what = f"metadata.name {saved.get('tuningjob')!r}" if saved.get("tuningjob") != job.name else ""
            what = what or ", ".join(f"spec.{name}" for name in changed)
            raise RunDirectoryError(
                f"{self.path} holds a run of a different job ({what} changed; only spec.budget may change "
                "between runs): start a new run with --output DIR"
            )
        self.started_at = started_at
        self._header = {"tuningjob": job.name, "startedAt": started_at, "spec": job.manifest.get("spec")}
        return RunState(attempts, self._storage(), started_at)

    def save(self, attempts: dict[int, int]) -> None:
        """Persist the attempt counts (atomically) next to the header."""
        write_json_atomically(
            self.path / RUN_JSON, {**self._header, "attempts": {str(n): c for n, c in sorted(attempts.items())}}
        )

    def _storage(self) -> JournalStorage:
        return JournalStorage(JournalFileBackend(str(self.journal_path)))


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Top-level spec fields that differ, budget excepted (raising maxTrials to go on is fine)."""
    names = (set(before) | set(after)) - {"budget"}
    return sorted(name for name in names if before.get(name) != after.get(name))
