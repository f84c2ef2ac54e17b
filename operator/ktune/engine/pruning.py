"""Where a job's pruner judges its trials, and the pruner's own state that a rebuilt engine needs.

A single-objective job's pruner judges trials in the job's study. Optuna refuses intermediate values in
multi-objective studies, so a multi-objective job with a pruner keeps a shadow single-objective study on
`pruner.metric` (same trials, same numbers) and its pruner judges trials there. The shadow study lives in
the job's storage, so `ktune run --resume` finds it, running trials' steps included, in its journal.

A rebuilt engine gives a trial the verdict the original would have, because it has all the pruner reads:
- every intermediate value of every trial (a record keeps them all; the operator persists them in a
  Trial's `status.intermediateHistory`);
- the rungs successive halving and hyperband write on a trial as they judge it (`completed_rung_<n>` system
  attributes). On a single-objective job they are the trial's own system attributes, hence in its record;
  a shadow trial's are copied onto the job's trial under `PRUNING_ATTR` after each judgement and put back on
  the shadow trial on rebuild;
- what a pruner estimates once, from the trials complete at that time: successive halving's
  `min_resource: auto` and hyperband's `max_resource: auto` (Optuna keeps the estimate in the pruner). The
  estimate is kept on the trial whose judgement made it (`PRUNER_ATTR`); a rebuilt pruner is built with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState as OptunaState

from ktune.algorithms import build_pruner
from ktune.engine.optuna_trials import TO_OPTUNA, add_trial
from ktune.engine.records import TrialRecord, TrialState
from ktune.spec import JobSpec

PRUNING_ATTR = "ktune_pruning"  # on a multi-objective job's trial: its shadow trial's system attributes
PRUNER_ATTR = "ktune_pruner"  # on the trial whose judgement estimated an "auto" option: {option: value}
AUTO_OPTIONS = {"successive_halving": "min_resource", "hyperband": "max_resource"}


class Pruning:
    """The study a job's pruner judges its trials in (the job's own, a shadow one, or none)."""

    def __init__(self, spec: JobSpec, study: optuna.Study, distributions: Mapping[str, BaseDistribution],
                 imported: Sequence[TrialRecord]) -> None:
        self.spec = spec
        self.metric = spec.pruner.metric or spec.objectives[0].metric
        """What `Engine.report` records per step: the pruning metric, or the first objective."""
        self._main = study
        self._distributions = dict(distributions)
        self._index = spec.objective_metrics.index(self.metric)
        self._imported = len(imported)
        self._ids: dict[int, int] = {}  # trial number -> its trial id in the judging study
        self._stored: dict[int, optuna.trial.FrozenTrial] = {}  # shadow trials a resumed storage holds
        self._estimate_kept = False
        self._study: optuna.Study | None = None
        if not spec.multi_objective:
            self._study = study
            study.pruner = self._pruner({})
        elif spec.pruner.name != "none" and spec.pruner.metric is not None:
            self._study = optuna.create_study(
                storage=study._storage, study_name=f"{study.study_name}-pruning", load_if_exists=True,
                pruner=self._pruner({}), direction=spec.objectives[self._index].direction)
            self._stored = {frozen.number: frozen for frozen in self._study.get_trials(deepcopy=False)}
            if not self._stored:
                for record in imported:
                    self._study.add_trial(self._shadow_trial(record))

    @property
    def _shadow(self) -> bool:
        return self._study is not None and self._study is not self._main

    def _pruner(self, estimate: Mapping[str, int]) -> optuna.pruners.BasePruner:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return build_pruner(self.spec.pruner.name, {**self.spec.pruner.options, **estimate})

    def _shadow_trial(self, record: TrialRecord) -> optuna.trial.FrozenTrial:
        """The shadow study's trial for a record (its rungs from `PRUNING_ATTR`)."""
        intermediate = dict(record.intermediate)
        values = None
        if record.state is TrialState.SUCCEEDED:
            values = [record.objective_values()[self._index]]
        elif record.state is TrialState.PRUNED and intermediate:
            values = [intermediate[max(intermediate)]]  # what Optuna's tell stores for a pruned trial
        return optuna.trial.create_trial(
            state=TO_OPTUNA[record.state], values=values, params=record.params,
            distributions=self._distributions if record.params else {},  # a deleted trial's placeholder has none
            intermediate_values=intermediate,
            system_attrs=dict(record.system_attrs.get(PRUNING_ATTR) or {}))

    def add(self, record: TrialRecord, trial_id: int) -> None:
        """Take one of the job's trials (new, rebuilt from its record, or found in the storage with `trial_id`)."""
        if self._study is None:
            return
        if not self._shadow:
            self._ids[record.number] = trial_id
            return
        stored = self._stored.get(self._imported + record.number)
        if stored is None:
            self._ids[record.number] = add_trial(self._study, self._shadow_trial(record))
            return
        # A resumed journal: the shadow trial holds every step, a running trial's too (its record does not).
        self._ids[record.number] = stored._trial_id
        record.intermediate = dict(stored.intermediate_values)
        if stored.state is OptunaState.RUNNING and record.state is not TrialState.RUNNING:
            self.finished(record)  # the process ended between the two studies' tells

    def restore(self, records: Iterable[TrialRecord]) -> None:
        """Build the pruner with the estimate a record keeps (see the module docstring)."""
        option = AUTO_OPTIONS.get(self.spec.pruner.name)
        if self._study is None or option is None:
            return
        for record in records:
            value = (record.system_attrs.get(PRUNER_ATTR) or {}).get(option)
            if isinstance(value, int) and not isinstance(value, bool):
                self._study.pruner = self._pruner({option: value})
                self._estimate_kept = True
                return

    def judge(self, number: int, trial_id: int, step: int, value: float, new: bool) -> bool:
        """Report `value` at `step` (when `new`) and ask the pruner; True to stop the trial. What the pruner
        wrote goes onto the job's trial `trial_id`; callers refresh the record's system attributes."""
        if self._study is None:
            return False
        trial = optuna.Trial(self._study, self._ids[number])
        if new:
            trial.report(value, step)
        pruned = trial.should_prune()
        storage = self._main._storage
        if self._shadow:
            rungs = dict(self._study._storage.get_trial(self._ids[number]).system_attrs)
            if rungs and storage.get_trial(trial_id).system_attrs.get(PRUNING_ATTR) != rungs:
                storage.set_trial_system_attr(trial_id, PRUNING_ATTR, rungs)
        if not self._estimate_kept:
            estimate = self._estimate()
            if estimate:
                storage.set_trial_system_attr(trial_id, PRUNER_ATTR, estimate)
                self._estimate_kept = True
        return pruned

    def _estimate(self) -> dict[str, Any]:
        """What the pruner's "auto" option was estimated to, once it was (Optuna keeps it in the pruner)."""
        option = AUTO_OPTIONS.get(self.spec.pruner.name)
        if self._study is None or option is None or self.spec.pruner.options.get(option, "auto") != "auto":
            return {}
        value = getattr(self._study.pruner, f"_{option}", None)
        return {option: value} if isinstance(value, int) and not isinstance(value, bool) else {}

    def finished(self, record: TrialRecord) -> None:
        """Tell the shadow study a trial's outcome (the job's own study is told by the engine)."""
        if not self._shadow:
            return
        assert self._study is not None
        values = [record.objective_values()[self._index]] if record.state is TrialState.SUCCEEDED else None
        self._study.tell(optuna.Trial(self._study, self._ids[record.number]), values, state=TO_OPTUNA[record.state])
