"""Samplers and pruners: Optuna objects built from a spec, and the checks of their options.

Also the TuningJob loader bound to these rules: what every caller above this layer uses to read a job.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ktune import spec
from ktune.algorithms.pruners import PRUNER_CLASSES, build_pruner
from ktune.algorithms.rules import OptunaRules
from ktune.algorithms.samplers import SAMPLER_CLASSES, build_sampler, grid_points, grid_size, trial_seed

RULES = OptunaRules()
"""The cluster's rules: the CRD, `ktune validate` and the operator."""
LOCAL_RULES = OptunaRules(local=True)
"""`ktune run`'s rules: also the samplers the operator image cannot run, where their packages import."""


def load_tuningjob(source: str | os.PathLike[str] | Mapping[str, Any]) -> spec.TuningJob:
    """A TuningJob from a YAML file path or a parsed object, with defaults filled; SpecError lists all problems."""
    return spec.load_tuningjob(source, RULES)


def load_local_tuningjob(source: str | os.PathLike[str] | Mapping[str, Any]) -> spec.TuningJob:
    """`load_tuningjob` for `ktune run`: the samplers allowed are those this machine can run (LOCAL_RULES)."""
    return spec.load_tuningjob(source, LOCAL_RULES)


def validate_tuningjob(obj: Mapping[str, Any]) -> list[str]:
    """Every problem with a parsed TuningJob object; an empty list when it is valid."""
    return spec.validate_tuningjob(obj, RULES)


def validate_files(paths: Sequence[str | os.PathLike[str]]) -> int:
    """`ktune validate`: print each file's verdict and problems; 0 when every file is valid, else 1."""
    return spec.validate_files(paths, RULES)


__all__ = [
    "LOCAL_RULES", "PRUNER_CLASSES", "RULES", "SAMPLER_CLASSES", "OptunaRules", "build_pruner", "build_sampler",
    "grid_points", "grid_size", "load_local_tuningjob", "load_tuningjob", "trial_seed", "validate_files",
    "validate_tuningjob",
]
