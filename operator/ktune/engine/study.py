"""The tuning engine: a TuningJob's Optuna study driven by ask and tell, with no I/O.

Trials run anywhere (processes, pods); callers ask for parameters, report intermediate metrics, tell the
outcome, and ask whether the job is finished. The engine is rebuilt from its trial records after a restart
and then suggests exactly what the original would have (same seed):

- each trial is suggested by a fresh sampler seeded from (job seed, trial number) — see
  `ktune.algorithms.samplers.trial_seed` — so no hidden random state survives between suggestions;
- a record keeps what the sampler wrote on its trial (`system_attrs`: grid ids, CMA-ES state, NSGA-II
  generations), and the rebuild puts every record back, RUNNING ones included, with its intermediate values.

Warm start: `imported` records (finished trials of earlier jobs, see `ktune.engine.warm_start`) go into the
study as COMPLETE trials before the job's own trials, marked so that a journal rebuild tells them apart.
They inform the sampler and pruner but are not the job's trials: own trials keep the numbers 0, 1, 2, ...
in records, counts, best trial and stop rules, while Optuna numbers them after the imported ones. The same
imported records and the same own records rebuild the same study, hence the same next suggestion.
`spec.warmStart.enqueue` configurations are the first trials' parameters (fixed through Optuna's
`enqueue_trial`; parameters an entry leaves out are sampled).

Pruning: a single-objective job reports the pruning metric to its own study, a multi-objective one to a shadow
study (`ktune.engine.pruning`, which also says what of the pruner's own state records keep for a rebuild).

Stop rules (checked in this order, see `stop_decision`):
- GoalReached: a succeeded trial's objective reached `goal` (>= when maximizing, <= when minimizing);
- TooManyFailedTrials: `maxFailedTrials` trials have failed (trials failed with reason JobStopped, which
  callers use for trials they stop when the job ends, or TrialDeleted, do not count);
- DeadlineExceeded: `activeDeadlineSeconds` have passed since the job started (first ask, or the earliest
  record's start);
- MaxTrialsReached: `maxTrials` trials exist (a grid job: at most the grid's size) and none is running;
  succeeded when at least one trial succeeded;
- BudgetExhausted: `maxGpuHours`/`maxCpuHours` leave no room for one more trial (`ktune.engine.budget`) and none is
  running; succeeded when at least one trial succeeded (the budget was spent as asked, not wasted).
Hours are counted from the records' `started_at` to `finished_at` (or `now`), which callers set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaState

from ktune.algorithms import build_sampler, grid_size
from ktune.engine.budget import BudgetUsage, budget_usage, exhausted_message, trials_within_budget
from ktune.engine.optuna_trials import (
    IMPORTED_ATTR,
    TO_OPTUNA,
    USER_ATTR,
    add_trial,
    parameter_distribution,
    plain_value,
    record_from_frozen,
    user_attr,
)
from ktune.engine.pruning import Pruning
from ktune.engine.records import (
    BUDGET_EXHAUSTED,
    INVALID_OBJECTIVE,
    MISSING_OBJECTIVE,
    NOT_COUNTED_AS_FAILED,
    PRUNED_BY_PRUNER,
    FinishDecision,
    TrialRecord,
    TrialState,
    dominates,
    finite_metrics,
)
from ktune.spec import JobSpec, TrialResources, trial_resources
from ktune.spec.resources import DEFAULT_CPUS

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Engine:
    """A TuningJob's study: suggest, record, prune, decide when the job is done."""

    def __init__(self, spec: JobSpec, records: Iterable[TrialRecord] = (), *, storage: Any = None,
                 study_name: str = "ktune", started_at: float | None = None,
                 imported: Sequence[TrialRecord] = ()) -> None:
        self.spec = spec
        try:
            self._resources = trial_resources(spec.trial)
        except ValueError:
            # Only possible without an hour budget (the spec checks the quantities when one is set): the
            # hours reported are then informational, counted as one CPU and no GPU per trial.
            self._resources = TrialResources(gpus=0.0, cpus=DEFAULT_CPUS)
        self._distributions = {p.name: parameter_distribution(p) for p in spec.parameters}
        self._maximize = [objective.direction == "maximize" for objective in spec.objectives]
        self._max_trials = spec.budget.max_trials
        if spec.sampler.name == "grid":
            self._max_trials = min(self._max_trials, grid_size(spec.parameters))
        self._storage = optuna.storages.get_storage(storage)
        self._study = optuna.create_study(
            storage=self._storage, study_name=study_name, load_if_exists=True,
            directions=[objective.direction for objective in spec.objectives],
            sampler=self._sampler(0), pruner=optuna.pruners.NopPruner(),
        )
        self._records: list[TrialRecord] = []
        self._trial_ids: dict[int, int] = {}
        stored = self._study.get_trials(deepcopy=False)
        self._imported = sum(IMPORTED_ATTR in frozen.user_attrs for frozen in stored)
        if not stored:
            for record in imported:
                self._study.add_trial(self._frozen(record, imported=True))
            self._imported = len(imported)
        self._pruning = Pruning(spec, self._study, self._distributions, imported[: self._imported])
        for frozen in stored:
            if IMPORTED_ATTR not in frozen.user_attrs and frozen.state is not OptunaState.WAITING:
                self._adopt(frozen)
        for record in sorted(records, key=lambda r: r.number):
            if record.number < len(self._records):
                continue  # already in the storage (a resumed journal)
            if record.number != len(self._records):
                raise ValueError(f"trial records must be numbered 0, 1, 2, ... without gaps "
                                 f"(trial {len(self._records)} is missing, got {record.number})")
            self._add(record)
        self._pruning.restore(self._records)
        self._started_at = started_at if started_at is not None else min(
            (r.started_at for r in self._records if r.started_at is not None), default=None)

    # -- construction helpers ------------------------------------------------------------------------

    def _sampler(self, number: int) -> optuna.samplers.BaseSampler:
        sampler = self.spec.sampler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return build_sampler(sampler.name, sampler.options, sampler.seed, self.spec.parameters, number)

    def _frozen(self, record: TrialRecord, *, imported: bool = False) -> optuna.trial.FrozenTrial:
        """The Optuna trial a record stands for in the job's study (the shadow study's: `Pruning`)."""
        intermediate = {} if self.spec.multi_objective else dict(record.intermediate)
        values = None
        if record.state is TrialState.SUCCEEDED:
            values = list(record.values or [])
        elif record.state is TrialState.PRUNED and intermediate:
            values = [intermediate[max(intermediate)]]  # what Optuna's tell stores for a pruned trial
        try:
            return optuna.trial.create_trial(
                state=TO_OPTUNA[record.state], values=values, params=record.params,
                distributions=self._distributions if record.params else {},  # a deleted trial's placeholder has none
                intermediate_values=intermediate, system_attrs=dict(record.system_attrs),
                user_attrs={IMPORTED_ATTR: True} if imported else {USER_ATTR: user_attr(record)},
            )
        except ValueError as error:
            if imported:
                raise ValueError(f"imported trial {record.number} does not fit the job's spec: {error}") from None
            raise ValueError(f"trial {record.number} does not fit the job's spec (was spec.parameters "
                             f"changed?): {error}") from None

    def _adopt(self, frozen: optuna.trial.FrozenTrial) -> None:
        """Take a trial found in the storage as a record."""
        record = record_from_frozen(frozen, len(self._records), with_intermediate=not self.spec.multi_objective)
        self._trial_ids[record.number] = frozen._trial_id
        self._records.append(record)
        self._pruning.add(record, frozen._trial_id)

    def _add(self, record: TrialRecord) -> None:
        record = TrialRecord.from_dict(record.to_dict())
        self._trial_ids[record.number] = add_trial(self._study, self._frozen(record))
        self._records.append(record)
        self._pruning.add(record, self._trial_ids[record.number])

    def _refresh_system_attrs(self, record: TrialRecord) -> None:
        record.system_attrs = dict(self._storage.get_trial(self._trial_ids[record.number]).system_attrs)

    # -- ask and tell ---------------------------------------------------------------------------------

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, for plots and export only."""
        return self._study

    @property
    def records(self) -> list[TrialRecord]:
        """The job's own trials (imported ones are not among them)."""
        return list(self._records)

    @property
    def imported_count(self) -> int:
        """How many warm-start trials the study holds besides the job's own."""
        return self._imported

    def record(self, number: int) -> TrialRecord:
        if not 0 <= number < len(self._records):
            raise KeyError(f"no trial {number} (the job has {len(self._records)} trials)")
        return self._records[number]

    def _running(self, number: int) -> TrialRecord:
        record = self.record(number)
        if record.state is not TrialState.RUNNING:
            raise ValueError(f"trial {number} is already {record.state.value}")
        return record

    def ask(self, now: float | None = None) -> TrialRecord:
        """A new RUNNING trial with the next number and its suggested parameters."""
        number = len(self._records)
        self._study.sampler = self._sampler(number)
        enqueue = self.spec.warm_start.enqueue
        if number < len(enqueue) and not self._study.get_trials(deepcopy=False, states=(OptunaState.WAITING,)):
            self._study.enqueue_trial(dict(enqueue[number]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self._study.ask(self._distributions)
        record = TrialRecord(number=number, params={k: plain_value(v) for k, v in trial.params.items()},
                             state=TrialState.RUNNING, started_at=now)
        trial.set_user_attr(USER_ATTR, user_attr(record))
        self._trial_ids[number] = trial._trial_id
        self._refresh_system_attrs(record)
        self._records.append(record)
        self._pruning.add(record, trial._trial_id)
        if self._started_at is None:
            self._started_at = now
        return record

    def report(self, number: int, step: int | float, metrics: Mapping[str, float]) -> bool:
        """Record a running trial's metrics at `step`; True when the pruner says to stop it now.

        `step` is a whole number; a float such as 3.0 (as JSON may carry it) counts as 3, others are ignored.
        """
        record = self.record(number)
        if record.state is not TrialState.RUNNING:
            return False
        finite = finite_metrics(metrics)
        record.metrics.update(finite)
        value = finite.get(self._pruning.metric)
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if value is None or isinstance(step, bool) or not isinstance(step, int) or step < 0:
            return False
        new = step not in record.intermediate
        if new:
            record.intermediate[step] = value
        pruned = self._pruning.judge(number, self._trial_ids[number], step, value, new)
        self._refresh_system_attrs(record)  # the pruner's rungs and estimates (see `ktune.engine.pruning`)
        return bool(pruned)

    def _finish(self, record: TrialRecord, state: TrialState, values: list[float] | None, reason: str | None,
                message: str | None, now: float | None) -> TrialRecord:
        record.state, record.values, record.reason, record.message = state, values, reason, message
        record.finished_at = now
        optuna.Trial(self._study, self._trial_ids[record.number]).set_user_attr(USER_ATTR, user_attr(record))
        self._study.tell(optuna.Trial(self._study, self._trial_ids[record.number]),
                         values if state is TrialState.SUCCEEDED else None, state=TO_OPTUNA[state])
        self._pruning.finished(record)
        self._refresh_system_attrs(record)
        return record

    def tell_succeeded(self, number: int, metrics: Mapping[str, float], now: float | None = None) -> TrialRecord:
        """A trial's final metrics; a missing or non-finite objective fails the trial instead."""
        record = self._running(number)
        final = finite_metrics(metrics)
        record.metrics.update(final)
        missing = [m for m in self.spec.objective_metrics if m not in metrics]
        if missing:
            return self._finish(record, TrialState.FAILED, None, MISSING_OBJECTIVE,
                                f"final metrics lack the objective metric {', '.join(missing)}", now)
        invalid = [m for m in self.spec.objective_metrics if m not in final]
        if invalid:
            shown = ", ".join(f"{m}={metrics[m]!r}" for m in invalid)
            return self._finish(record, TrialState.FAILED, None, INVALID_OBJECTIVE,
                                f"objective metric is not a finite number: {shown}", now)
        values = [final[m] for m in self.spec.objective_metrics]
        return self._finish(record, TrialState.SUCCEEDED, values, None, None, now)

    def tell_pruned(self, number: int, now: float | None = None, reason: str = PRUNED_BY_PRUNER) -> TrialRecord:
        record = self._running(number)
        last = record.intermediate[max(record.intermediate)] if record.intermediate else None
        message = None if last is None else f"{self._pruning.metric}={last:g} at step {max(record.intermediate)}"
        return self._finish(record, TrialState.PRUNED, None, reason, message, now)

    def tell_failed(self, number: int, reason: str, message: str = "", now: float | None = None) -> TrialRecord:
        record = self._running(number)
        return self._finish(record, TrialState.FAILED, None, reason, message or None, now)

    # -- results and decisions ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("running", "succeeded", "pruned", "failed"), 0)
        for record in self._records:
            counts[record.state.value.lower()] += 1
        return counts

    def _succeeded(self) -> list[TrialRecord]:
        return [r for r in self._records if r.state is TrialState.SUCCEEDED]

    @property
    def best_trial(self) -> TrialRecord | None:
        """The best succeeded trial of a single-objective job (lowest number on ties); None otherwise."""
        if self.spec.multi_objective:
            return None
        best = None
        for record in self._succeeded():
            value = record.objective_values()[0]
            if best is None or (value > best.objective_values()[0] if self._maximize[0]
                                else value < best.objective_values()[0]):
                best = record
        return best

    @property
    def pareto_front(self) -> list[TrialRecord]:
        """Succeeded trials no other succeeded trial dominates, by number; [best] for a single objective."""
        if not self.spec.multi_objective:
            best = self.best_trial
            return [] if best is None else [best]
        done = self._succeeded()
        return [r for r in done
                if not any(dominates(o.objective_values(), r.objective_values(), self._maximize) for o in done)]

    def _goal_reached(self) -> FinishDecision | None:
        objective = self.spec.objectives[0]
        best = self.best_trial
        if objective.goal is None or best is None:
            return None
        value = best.objective_values()[0]
        if (value >= objective.goal) if self._maximize[0] else (value <= objective.goal):
            sign = ">=" if self._maximize[0] else "<="
            return FinishDecision("GoalReached", f"trial {best.number} reached {objective.metric}={value:g} "
                                                 f"(goal {sign} {objective.goal:g})", True)
        return None

    def stop_decision(self, now: float) -> FinishDecision | None:
        """Why the job is finished, or None while it goes on (rules in the module docstring)."""
        goal = self._goal_reached()
        if goal is not None:
            return goal
        budget = self.spec.budget
        failed = sum(r.state is TrialState.FAILED and r.reason not in NOT_COUNTED_AS_FAILED for r in self._records)
        if budget.max_failed_trials is not None and failed >= budget.max_failed_trials:
            return FinishDecision("TooManyFailedTrials", f"{failed} trials failed "
                                                         f"(maxFailedTrials {budget.max_failed_trials})", False)
        deadline = budget.active_deadline_seconds
        if deadline is not None and self._started_at is not None and now - self._started_at >= deadline:
            return FinishDecision("DeadlineExceeded", f"the job ran {now - self._started_at:.0f}s "
                                                      f"(activeDeadlineSeconds {deadline})", False)
        running = sum(r.state is TrialState.RUNNING for r in self._records)
        if len(self._records) >= self._max_trials and running == 0:
            counts = self.counts()
            summary = (f"{len(self._records)} trials: {counts['succeeded']} succeeded, {counts['pruned']} pruned, "
                       f"{counts['failed']} failed")
            return FinishDecision("MaxTrialsReached", summary, counts["succeeded"] > 0)
        if running == 0 and trials_within_budget(budget, self.budget_usage(now), self._resources) == 0:
            message = exhausted_message(budget, self.budget_usage(now), self._resources)
            n = len(self._records)
            return FinishDecision(BUDGET_EXHAUSTED, f"after {n} trial{'s' * (n != 1)}: {message}",
                                  self.counts()["succeeded"] > 0)
        return None

    def budget_usage(self, now: float) -> BudgetUsage:
        """GPU- and CPU-hours the job's own trials used up to `now` (see `ktune.engine.budget`)."""
        return budget_usage(self._records, self._resources, now)

    def launchable(self, running: int, now: float) -> int:
        """How many new trials may start now: within parallelism, maxTrials and the hour budgets; none once
        the job stops."""
        if self.stop_decision(now) is not None:
            return 0
        allowed = min(self.spec.budget.parallelism - running, self._max_trials - len(self._records))
        within = trials_within_budget(self.spec.budget, self.budget_usage(now), self._resources)
        return max(0, allowed if within is None else min(allowed, within))
