"""The TuningJob: its model, its checks, loading it, and the CRD schema made from the same facts.

The bottom layer: it imports nothing of ktune but `ktune.contract`. Loading needs the sampler and
pruner rules (`AlgorithmRules`); `ktune.algorithms.load_tuningjob` is the loader bound to them.
"""

from ktune.spec.algorithm_rules import AlgorithmRules, Problems
from ktune.spec.checker import did_you_mean, show
from ktune.spec.loading import load_tuningjob, validate_files, validate_tuningjob
from ktune.spec.model import (
    API_VERSION,
    DEFAULTS,
    MAX_GRID_POINTS,
    Budget,
    JobRef,
    JobSpec,
    MetricsSource,
    Objective,
    Parameter,
    PrunerSpec,
    SamplerSpec,
    SpecError,
    TrialSpec,
    TuningJob,
    WarmStart,
)
from ktune.spec.resources import GPU_RESOURCE, TrialResources, quantity, template_resources
from ktune.spec.search_space import value_in_space
from ktune.spec.trial import trial_resources

__all__ = [
    "API_VERSION", "DEFAULTS", "GPU_RESOURCE", "MAX_GRID_POINTS", "AlgorithmRules", "Budget", "JobRef", "JobSpec",
    "MetricsSource", "Objective", "Parameter", "Problems", "PrunerSpec", "SamplerSpec", "SpecError", "TrialResources",
    "TrialSpec", "TuningJob", "WarmStart", "did_you_mean", "load_tuningjob", "quantity", "show", "template_resources",
    "trial_resources", "validate_files", "validate_tuningjob", "value_in_space",
]
