"""The tuning engine: a TuningJob's Optuna study by ask and tell, its records, stop rules, budgets and
warm start. No I/O: the trial lifecycle (`ktune.trials`) and the backends call it."""

from ktune.engine.budget import BudgetUsage
from ktune.engine.optuna_trials import parameter_distribution
from ktune.engine.records import (
    BUDGET_EXHAUSTED,
    INVALID_OBJECTIVE,
    JOB_STOPPED,
    MISSING_OBJECTIVE,
    PRUNED_BY_PRUNER,
    TRIAL_DELETED,
    FinishDecision,
    TrialRecord,
    TrialState,
)
from ktune.engine.study import Engine
from ktune.engine.warm_start import ImportedTrials, WarmStartSource, import_trials

__all__ = [
    "BUDGET_EXHAUSTED", "INVALID_OBJECTIVE", "JOB_STOPPED", "MISSING_OBJECTIVE", "PRUNED_BY_PRUNER", "TRIAL_DELETED",
    "BudgetUsage",
    "Engine", "FinishDecision", "ImportedTrials", "TrialRecord", "TrialState", "WarmStartSource", "import_trials",
    "parameter_distribution",
]
