"""The TuningJob model: typed, frozen dataclasses, the defaults table and the limits.

One source of truth for the TuningJob's fields and their defaults (`DEFAULTS`); the checks that fill
them live in `ktune.spec.fields`, `ktune.spec.search_space` and `ktune.spec.loading`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ktune import contract
from ktune.spec import resource_kinds

API_VERSION = f"{contract.API_GROUP}/{contract.API_VERSION}"
# Every default of a TuningJob, in one place. The loader copies these into the manifest it returns.
DEFAULTS: dict[str, Any] = {
    "objective.direction": "maximize",
    "metrics": [],
    "parameter.log": False,
    "parameter.int.step": 1,
    "sampler": {"name": "tpe", "seed": None, "options": {}},
    "pruner": {"name": "none", "options": {}},
    "budget": {"maxTrials": 20, "parallelism": 1, "maxFailedTrials": None, "activeDeadlineSeconds": None,
               "maxGpuHours": None, "maxCpuHours": None},
    "trial": {"retries": 0, "metricsPort": contract.DEFAULT_METRICS_PORT},
    "metricsSource": {"type": "direct"},
    "warmStart": {"from": [], "enqueue": []},
    "suspend": False,
}
MAX_NAME_LENGTH = 63
MAX_GRID_POINTS = 100_000
MAX_TRIALS_LIMIT = 100_000
MAX_RETRIES = 10
MAX_SEED = 2**32 - 1
# Bounds and steps beyond this lose integer precision in Optuna's float internals.
MAX_ABS_BOUND = 10**15
DIRECTIONS = ("maximize", "minimize")
PARAMETER_TYPES = ("float", "int", "categorical")
METRICS_SOURCE_TYPES = ("direct", "prometheus", "logs")
LOG_FORMATS = ("katib", "json")
KATIB_DEFAULT_FILTER = contract.KATIB_DEFAULT_FILTER
DEFAULT_STEP_METRIC = contract.DEFAULT_STEP_METRIC
MAX_FILTER_LENGTH = 1024


class SpecError(ValueError):
    """A TuningJob that cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["maximize", "minimize"]
    goal: float | None = None


@dataclass(frozen=True)
class Parameter:
    """One searched parameter. `step` is None for a float without a step; ints default to step 1."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def bounds(self) -> tuple[float, float]:
        """`low` and `high` of a float or int parameter (a categorical one has neither)."""
        if self.low is None or self.high is None:
            raise ValueError(f"parameter {self.name}: a {self.type} parameter has no low and high")
        return self.low, self.high


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    seed: int | None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    """`metric` is what the pruner judges: pruner.metric, or the single objective's metric."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None


@dataclass(frozen=True)
class Budget:
    max_trials: int
    parallelism: int
    max_failed_trials: int | None
    active_deadline_seconds: int | None
    max_gpu_hours: float | None = None
    max_cpu_hours: float | None = None


# The kinds `spec.trial.resource` may be, as (apiVersion, kind); the CRD and `ktune validate` list them.
RESOURCE_KINDS = resource_kinds.RESOURCE_KINDS
JOB_COMPLETION_MODES = ("NonIndexed", "Indexed")


@dataclass(frozen=True)
class TrialResource:
    """A trial that is a Kubernetes resource of several pods (a `batch/v1` Job, a Kubeflow training job) instead
    of one pod.

    `manifest` is the resource as written (apiVersion, kind, metadata, spec) with its defaults filled (a Kubeflow
    job's replica types in the training-operator's spelling and rank order). Its pod templates are read with
    `ktune.spec.resource_kinds.pod_templates` and rewritten with `map_pod_templates`; the primary (rank-0)
    replica's template is also `TrialSpec.template`.
    """

    api_version: str
    kind: str
    manifest: dict[str, Any]
    pods: int
    """How many pods one attempt runs at once: a Job's parallelism (at most its completions); the sum of a
    Kubeflow job's replicas."""
    indexed: bool = False
    """completionMode Indexed: each pod gets JOB_COMPLETION_INDEX; index 0 is the metrics pod."""
    primary_pod: dict[str, Any] | None = None
    """LabelSelector of the metrics pod (the one that serves /metrics and writes the result): `primaryPod`, or the
    kind's default (Indexed Job: index 0; PyTorchJob: the Master; ...). None: a NonIndexed Job's first pod."""
    queue_name: str | None = None
    """`spec.trial.queueName`: Kueue's LocalQueue the resource waits in (created suspended); None: no queue."""


@dataclass(frozen=True)
class TrialSpec:
    retries: int
    metrics_port: int
    template: dict[str, Any]
    """The pod template: `spec.trial.template`, or the resource's primary (rank-0) pod template."""
    resource: TrialResource | None = None
    """None: each attempt is one pod made from `template`."""

    @property
    def pods(self) -> int:
        """Pods one attempt runs at once (`ktune.spec.trial.trial_resources` sums what each requests)."""
        return 1 if self.resource is None else self.resource.pods


@dataclass(frozen=True)
class MetricsSource:
    """Where intermediate metrics come from. `format`, `filter` and `step_metric` are for type logs only:
    `format` None tries both formats on each line; `filter` None is Katib's default filter."""

    type: Literal["direct", "prometheus", "logs"]
    url: str | None = None
    format: Literal["katib", "json"] | None = None
    filter: str | None = None
    step_metric: str = DEFAULT_STEP_METRIC


@dataclass(frozen=True)
class JobRef:
    """An earlier TuningJob; namespace None means the new job's own namespace."""

    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class WarmStart:
    """Earlier jobs whose finished trials seed the study, and configurations to run first (maybe partial)."""

    sources: tuple[JobRef, ...] = ()
    enqueue: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class JobSpec:
    objectives: tuple[Objective, ...]
    metrics: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    sampler: SamplerSpec
    pruner: PrunerSpec
    budget: Budget
    trial: TrialSpec
    metrics_source: MetricsSource
    warm_start: WarmStart = WarmStart()
    suspend: bool = False
    """Paused: running trials finish, no new one starts (as a Kubernetes Job's `spec.suspend`)."""

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def objective_metrics(self) -> tuple[str, ...]:
        return tuple(objective.metric for objective in self.objectives)

    @property
    def recorded_metrics(self) -> tuple[str, ...]:
        """Objective metrics, then the extra metrics, without duplicates."""
        return tuple(dict.fromkeys(self.objective_metrics + self.metrics))


@dataclass(frozen=True)
class TuningJob:
    name: str
    namespace: str | None
    spec: JobSpec
    manifest: dict[str, Any]
