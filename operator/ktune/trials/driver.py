"""The trial lifecycle, once for every backend: launch, observe, report and prune, retry, finish, stop.

`TrialDriver.advance` is one pass over a job's live trials. It makes every decision and does no I/O
itself: attempts run through a `Backend` (local processes, pods), outcomes go to the engine, and what
happened goes to `TrialEvents`. The rules, the same on a laptop and on a cluster:

- **Running** means an attempt the backend still holds: a trial told to stop (pruned, or stopped
  with the job) counts against `parallelism` until its process or pod is gone, so that `parallelism`
  bounds the resources trials hold.
- **Final metrics** are the attempt's last scraped values overlaid by the result it wrote (its
  termination message or result file): a trainer that writes no result is judged on what it last
  served. A result that is not a JSON object of numbers fails the trial (`InvalidResult`); the engine
  judges the objective (`MissingObjective`, `InvalidObjective`).
- **Failure reasons** come from the backend (`Error`, `OOMKilled`, `PodDeleted`), or from waiting too
  long: for an image (the backend's reason, e.g. `ImagePullBackOff`), for a node (`Unschedulable`),
  for metrics (`MetricsUnavailable`) or for a lost node to confirm a deletion (`NodeLost`); never for a queue
  (Kueue) to admit it: that wait is the cluster's policy, and its time is not counted in the trial's hours. A failed
  attempt is retried `spec.trial.retries` times under the same number, and so is a launch a policy
  refused; an invalid one is not. A launch put off for a passing reason (a used-up quota) is tried
  again at the next pass without using up a retry, and the trial waits (`deferred`).
- **Steps** go to the pruner once each, in order: a retried attempt's steps up to the last one heard
  are not reported again (Optuna keeps the first value of a step). One scrape may bring several steps
  (a Prometheus range); they are heard oldest first, and the rest are dropped once one is pruned.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from ktune.engine import JOB_STOPPED, Engine, FinishDecision, TrialRecord, TrialState
from ktune.metrics import MetricsError, TrialMetrics, parse_result
from ktune.trials.backend import (
    Backend,
    HowStarted,
    LaunchDeferred,
    LaunchRefused,
    Observation,
    Phase,
    TrialEvents,
)

MAX_METRICS_KEPT = 64
"""Metric names kept per trial: the job's own (objectives and spec.metrics) always, others up to this many, so that
a trainer inventing a name per step cannot grow a Trial past what the API server stores."""
INVALID_RESULT = "InvalidResult"
METRICS_UNAVAILABLE = "MetricsUnavailable"
NODE_LOST = "NodeLost"


@dataclass(frozen=True)
class DriverSettings:
    """How patient the driver is; each runner fills these from its own options."""

    scrape_interval_seconds: float = 2.0
    """Seconds between two reads of one trial's metrics."""
    stop_grace_seconds: float | None = None
    """How long a trial told to stop may take before it is killed (None: the backend's default)."""
    metrics_unavailable_timeout_seconds: float = 600.0
    """How long a running attempt's metrics may stay unreadable before it fails with MetricsUnavailable."""
    image_pull_timeout_seconds: float = 300.0
    """How long an attempt may wait for its image before it fails with the backend's reason."""
    unschedulable_timeout_seconds: float = 600.0
    """How long an attempt may wait for a node before it fails (Unschedulable)."""
    lost_pod_timeout_seconds: float = 120.0
    """How long an attempt may stay Terminating past its grace period before it is force-deleted (NodeLost)."""


@dataclass
class LiveTrial:
    """What the driver tracks about a trial whose attempt it still holds."""

    number: int
    attempt: int = 0
    """The current attempt's number (1, 2, ...); 0 before the first."""
    launch_next: HowStarted | None = None
    """Launch attempt `attempt + 1` at the next pass, and how to announce it (a trial just adopted)."""
    last_step: int | None = None
    """The last step handed to the pruner (kept across attempts)."""
    last_metrics: dict[str, float] = field(default_factory=dict)
    """The current attempt's latest scraped values."""
    cursor: object | None = None
    """Where the current attempt's next scrape goes on from (the backend's own; None before its first)."""
    next_scrape_at: float = 0.0
    silent_since: float | None = None
    """When the current attempt's metrics stopped answering, None while they answer."""
    stopping: bool = False
    """The engine knows the outcome; the attempt is being stopped and still counts as running."""
    queued_at: float | None = None
    """When the driver last saw the attempt waiting for a queue to admit it; None while it is not waiting."""
    admitted_at: float | None = None
    """When the driver saw the attempt's queue admit it: its waits for a node or an image count from then."""


class TrialDriver:
    """Drives one job's trials through their lifecycle, pass by pass."""

    def __init__(self, engine: Engine, settings: DriverSettings, events: TrialEvents) -> None:
        self.engine = engine
        self.settings = settings
        self.events = events
        self.retries = engine.spec.trial.retries
        self.live: dict[int, LiveTrial] = {}
        self.conflict = False
        """Set when `events.trial_created` found the trial made elsewhere: the runner should rebuild."""
        self.deferred: dict[int, tuple[str, str]] = {}
        """Trial number -> (reason, message) of a launch the backend put off (a used-up quota)."""

    @property
    def running(self) -> int:
        """Trials whose attempt is held: what `parallelism` bounds."""
        return len(self.live)

    def adopt(self, record: TrialRecord, attempts: int, *, relaunch: HowStarted | None) -> None:
        """Take over a running trial after a restart: its attempt `attempts` is observed as it is, or (with
        `relaunch`) attempt `attempts + 1` is launched at the next pass."""
        steps = record.intermediate
        self.live[record.number] = LiveTrial(record.number, attempts, relaunch, max(steps) if steps else None)

    def live_attempts(self) -> Mapping[int, int]:
        """Trial number -> the attempt the driver holds (the backend may clean up any other): the one it launches
        at the next pass where a launch is pending, as what that launch adopts may exist already (made by a launch
        that then failed or was deferred, or by an operator that stopped before recording it)."""
        held = {number: live.attempt + (live.launch_next is not None) for number, live in self.live.items()}
        return {number: attempt for number, attempt in held.items() if attempt}

    def advance(self, backend: Backend, now: float, *, launch: bool = True) -> FinishDecision | None:
        """One pass: observe every live trial and act, stop running trials once the job is finished, launch
        what the engine allows (nothing new when not `launch`: a suspended job). The engine's decision when
        the job is finished, else None."""
        for number in sorted(self.live):
            self._observe(backend, self.live[number], now)
        decision = self.engine.stop_decision(now)
        if decision is not None and self.engine.counts()["running"]:
            self._stop_unfinished(backend, decision, now)
            decision = self.engine.stop_decision(now) or decision
        if decision is None and launch:
            self._launch_new(backend, now)
        return decision

    # -- one live trial ----------------------------------------------------------------------------

    def _observe(self, backend: Backend, live: LiveTrial, now: float) -> None:
        if live.launch_next is not None:
            self._start_attempt(backend, live, live.attempt + 1, live.launch_next, now)
            return
        seen = backend.observe(live.number, live.attempt)
        if live.stopping:
            self._observe_stopping(backend, live, seen, now)
            return
        self._track_queue(live, seen, now)
        if seen.phase is Phase.SUCCEEDED:
            self._succeeded(backend, live, seen, now)
        elif seen.phase in (Phase.FAILED, Phase.GONE):
            self._attempt_failed(backend, live, seen.reason, seen.message, now)
        elif seen.phase is Phase.TERMINATING:
            self._fail_if_lost(backend, live, seen, now)
        elif seen.phase is Phase.PENDING:
            self._fail_if_stuck(backend, live, seen, now)
        elif now >= live.next_scrape_at:
            live.next_scrape_at = now + self.settings.scrape_interval_seconds
            self._read_metrics(backend, live, now)

    def _observe_stopping(self, backend: Backend, live: LiveTrial, seen: Observation, now: float) -> None:
        """A stopped attempt counts as running until it is gone; a lost node never confirms, so force it."""
        if seen.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.GONE):
            backend.release(live.number, live.attempt)
            del self.live[live.number]
        elif seen.phase is Phase.TERMINATING and self._lost_for(seen, now) is not None:
            backend.delete(live.number, live.attempt, force=True)

    def _lost_for(self, seen: Observation, now: float) -> float | None:
        overdue = now - (seen.since if seen.since is not None else now)
        return overdue if overdue >= self.settings.lost_pod_timeout_seconds else None

    def _fail_if_lost(self, backend: Backend, live: LiveTrial, seen: Observation, now: float) -> None:
        overdue = self._lost_for(seen, now)
        if overdue is None:
            return
        backend.delete(live.number, live.attempt, force=True)
        self._attempt_failed(backend, live, NODE_LOST, f"{seen.message} stayed Terminating {overdue:.0f} s past its "
                                                        "grace period (its node stopped answering); force-deleted it",
                             now)

    def _track_queue(self, live: LiveTrial, seen: Observation, now: float) -> None:
        """Keep a queued attempt's wait out of its hours (its start moves later by the time waited), and tell the
        runner when it starts and stops waiting (at first, and again when the queue preempts it)."""
        record = self.engine.record(live.number)
        queued = seen.phase is Phase.PENDING and seen.waiting_for == "queue"
        if queued and live.queued_at is not None and record.started_at is not None:
            # Waiting from one look to the next: hours run from started_at (see ktune.engine.budget). A look that
            # finds it admitted counts the time since the last one as running: hours are never undercounted.
            record.started_at += now - live.queued_at
        if queued and live.queued_at is None:
            self.events.attempt_waiting(record, live.attempt, (seen.reason, seen.message))
        elif not queued and live.queued_at is not None:
            self.events.attempt_waiting(record, live.attempt, None)
            live.admitted_at = now
        live.queued_at = now if queued else None

    def _fail_if_stuck(self, backend: Backend, live: LiveTrial, seen: Observation, now: float) -> None:
        limits = {"image": self.settings.image_pull_timeout_seconds,
                  "node": self.settings.unschedulable_timeout_seconds}
        since = seen.since if seen.since is not None else now
        if live.admitted_at is not None:  # the resource's creation was before its time in the queue
            since = max(since, live.admitted_at)
        waited = now - since
        if seen.waiting_for is None or seen.waiting_for == "queue" or waited < limits[seen.waiting_for]:
            return
        backend.delete(live.number, live.attempt)
        self._attempt_failed(backend, live, seen.reason, seen.message, now)

    def _read_metrics(self, backend: Backend, live: LiveTrial, now: float) -> None:
        try:
            scraped = backend.scrape(live.number, live.attempt, live.cursor)
        except MetricsError as error:
            self._metrics_silent(backend, live, str(error), now)
            return
        live.silent_since, live.cursor = None, scraped.cursor
        for reading in scraped.readings:
            self._heard(backend, live, reading, now)
            if live.stopping:  # pruned: later steps of the attempt no longer count
                return

    def _metrics_silent(self, backend: Backend, live: LiveTrial, why: str, now: float) -> None:
        """Fail the attempt with MetricsUnavailable once its metrics stayed silent for the configured time."""
        if live.silent_since is None:
            live.silent_since = now
            return
        silent = now - live.silent_since
        if silent < self.settings.metrics_unavailable_timeout_seconds:
            return
        backend.delete(live.number, live.attempt)
        self._attempt_failed(backend, live, METRICS_UNAVAILABLE,
                             f"the trial's metrics did not answer for {silent:.0f} s (last error: {why})", now)

    def _heard(self, backend: Backend, live: LiveTrial, reading: TrialMetrics, now: float) -> None:
        """New values: keep them for the final metrics; a new step goes to the pruner, which may stop it."""
        values = self._bounded(live.last_metrics, reading.values)
        live.last_metrics.update(values)
        if reading.step is None or (live.last_step is not None and reading.step <= live.last_step):
            return
        live.last_step = reading.step
        if not self.engine.report(live.number, reading.step, values):
            self.events.trial_reported(live.number, live.attempt, reading.step)
            return
        record = self.engine.tell_pruned(live.number, now=now)
        self.events.trial_finished(record, live.attempt, live.last_step)  # the outcome is kept before the stop
        self._stop(backend, live)

    def _bounded(self, kept: Mapping[str, float], new: Mapping[str, float]) -> dict[str, float]:
        """The values of `new` to keep beside `kept`: names already kept and the job's own always, other new
        names while fewer than MAX_METRICS_KEPT are kept (so the set of names a trial keeps only grows)."""
        own = set(self.engine.spec.recorded_metrics)
        room = MAX_METRICS_KEPT - len(kept)
        values = {}
        for name, value in new.items():
            if name in kept or name in own:
                values[name] = value
            elif room > 0:
                values[name] = value
                room -= 1
        return values

    def _succeeded(self, backend: Backend, live: LiveTrial, seen: Observation, now: float) -> None:
        try:
            written = parse_result(seen.result) if seen.result is not None and seen.result.strip() else {}
        except MetricsError as error:
            record = self.engine.tell_failed(live.number, INVALID_RESULT, f"{seen.result_source}: {error}", now=now)
        else:
            final = {**live.last_metrics, **self._bounded(live.last_metrics, written)}
            record = self.engine.tell_succeeded(live.number, final, now=now)
        self._finished(backend, live, record)

    def _attempt_failed(self, backend: Backend, live: LiveTrial, reason: str, message: str, now: float) -> None:
        if live.attempt <= self.retries:
            self.events.attempt_retried(live.number, live.attempt, reason, message)
            backend.release(live.number, live.attempt)
            self._start_attempt(backend, live, live.attempt + 1, "retry", now)
            return
        self._finished(backend, live, self.engine.tell_failed(live.number, reason, message, now=now))

    def _finished(self, backend: Backend, live: LiveTrial, record: TrialRecord) -> None:
        """The attempt ended on its own and the engine knows the outcome: keep the outcome, then let go of the
        attempt (a backend may delete what it held)."""
        del self.live[live.number]
        self.deferred.pop(live.number, None)
        self.events.trial_finished(record, live.attempt, live.last_step)
        backend.release(live.number, live.attempt)

    def _stop(self, backend: Backend, live: LiveTrial) -> None:
        live.stopping = True
        backend.stop(live.number, live.attempt, self.settings.stop_grace_seconds)

    # -- starting and stopping ---------------------------------------------------------------------

    def _start_attempt(self, backend: Backend, live: LiveTrial, attempt: int, how: HowStarted, now: float) -> None:
        record = self.engine.record(live.number)
        try:
            backend.launch(record, attempt)
        except LaunchDeferred as deferral:
            live.attempt, live.launch_next = attempt - 1, how  # the same launch again at the next pass
            self.deferred[live.number] = (deferral.reason, deferral.message)
            return
        except LaunchRefused as refusal:
            live.attempt, live.launch_next = attempt, None
            self.deferred.pop(live.number, None)
            if refusal.retryable:
                self._attempt_failed(backend, live, refusal.reason, refusal.message, now)
            else:  # the attempt itself is invalid (a bad template, a missing command): no retry can help
                self._finished(backend, live, self.engine.tell_failed(live.number, refusal.reason, refusal.message,
                                                                      now=now))
            return
        self.deferred.pop(live.number, None)
        live.attempt, live.launch_next = attempt, None
        live.last_metrics, live.silent_since, live.next_scrape_at, live.cursor = {}, None, 0.0, None
        live.queued_at, live.admitted_at = None, None
        self.events.attempt_started(record, attempt, how)

    def _launch_new(self, backend: Backend, now: float) -> None:
        for _ in range(self.engine.launchable(self.running, now)):
            record = self.engine.ask(now)
            if not self.events.trial_created(record):
                self.conflict = True
                return
            live = self.live[record.number] = LiveTrial(record.number)
            self._start_attempt(backend, live, 1, "started", now)

    def _stop_unfinished(self, backend: Backend, decision: FinishDecision, now: float) -> None:
        """The job is finished while trials still run (goal, deadline, failures): stop them."""
        for number in sorted(self.live):
            live = self.live[number]
            if self.engine.record(number).state is not TrialState.RUNNING:
                continue
            record = self.engine.tell_failed(number, JOB_STOPPED, decision.message, now=now)
            self.events.trial_finished(record, live.attempt, live.last_step)
            if live.attempt and live.launch_next is None:
                self._stop(backend, live)
            else:
                del self.live[number]
                self.deferred.pop(number, None)
