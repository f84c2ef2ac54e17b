"""What validating a TuningJob needs to know about samplers and pruners, without knowing Optuna.

`ktune.spec` is the bottom layer: it may not import `ktune.algorithms`, which builds Optuna objects
from a spec. The loader therefore takes the algorithm rules as an argument; `ktune.algorithms`
implements them and offers the loader bound to them (`ktune.algorithms.load_tuningjob`).
Every check returns `(path, rule)` pairs, the form of a problem line.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ktune.spec.model import Parameter

Problems = list[tuple[str, str]]


class AlgorithmRules(Protocol):
    """The samplers and pruners a TuningJob may name, and the checks of their options."""

    @property
    def sampler_names(self) -> tuple[str, ...]:
        """Every value `spec.sampler.name` may take."""
        ...

    @property
    def unavailable_samplers(self) -> Mapping[str, str]:
        """Sampler names refused here though ktune knows them, each with why and what to do instead."""
        ...

    @property
    def single_objective_samplers(self) -> tuple[str, ...]:
        """Samplers that optimise one objective only (refused with `objectives`)."""
        ...

    @property
    def pruner_names(self) -> tuple[str, ...]:
        """Every value `spec.pruner.name` may take."""
        ...

    def sampler_option_problems(self, name: str, options: Mapping[str, Any], path: str) -> Problems:
        """Options of sampler `name` checked one by one against what it accepts."""
        ...

    def pruner_option_problems(self, name: str, options: Mapping[str, Any], path: str) -> Problems:
        """Options of pruner `name` checked one by one against what it accepts."""
        ...

    def sampler_fit_problems(self, name: str, options: Mapping[str, Any], seed: int | None,
                             parameters: Sequence[Parameter], objective_count: int) -> Problems:
        """Rules joining the sampler with the search space and the objectives, then the sampler's own."""
        ...

    def pruner_build_problems(self, name: str, options: Mapping[str, Any]) -> Problems:
        """What the pruner's constructor refuses among values that passed the option checks."""
        ...
