"""GPU- and CPU-hour budgets: requests read from the template, hours from trial times, the stop rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ktune.engine import Engine, TrialRecord, TrialState
from ktune.engine.budget import budget_usage, trials_within_budget
from ktune.spec import Budget, JobSpec, SpecError, TrialResources, quantity, template_resources

HOUR = 3600.0


def gpu_template(gpus: str = "2", cpu: str | None = "500m") -> dict:
    resources = {"limits": {"nvidia.com/gpu": gpus}}
    if cpu is not None:
        resources["requests"] = {"cpu": cpu}
    return {"spec": {"containers": [{"name": "trainer", "image": "trainer:1", "resources": resources},
                                    {"name": "sidecar", "image": "side:1",
                                     "resources": {"limits": {"cpu": "1"}}}]}}


def test_quantities_read_as_kubernetes_writes_them() -> None:
    assert [quantity(v) for v in ("500m", "2", "1.5", 3, "1k")] == [0.5, 2.0, 1.5, 3.0, 1000.0]
    with pytest.raises(ValueError, match="not a Kubernetes quantity: 'two'"):
        quantity("two")


def test_a_template_requests_the_sum_of_its_containers_with_limits_standing_in_for_requests() -> None:
    assert template_resources(gpu_template()) == TrialResources(gpus=2.0, cpus=1.5)
    assert template_resources({"spec": {"containers": [{"name": "t", "command": ["x"]}]}}) == \
        TrialResources(gpus=0.0, cpus=1.0)


def test_hours_count_finished_and_running_trials_of_every_state() -> None:
    records = [TrialRecord(0, {}, TrialState.SUCCEEDED, [1.0], started_at=0.0, finished_at=HOUR),
               TrialRecord(1, {}, TrialState.PRUNED, None, started_at=HOUR, finished_at=1.5 * HOUR),
               TrialRecord(2, {}, TrialState.FAILED, None, started_at=2 * HOUR, finished_at=2.5 * HOUR),
               TrialRecord(3, {}, TrialState.RUNNING, None, started_at=3 * HOUR)]
    usage = budget_usage(records, TrialResources(gpus=2.0, cpus=4.0), now=4 * HOUR)
    assert usage.gpu_hours == pytest.approx(6.0) and usage.cpu_hours == pytest.approx(12.0)
    assert usage.mean_trial_hours == pytest.approx(2 / 3)
    assert usage.running_elapsed_hours == (1.0,)


def test_the_next_trial_starts_only_when_its_likely_hours_fit() -> None:
    budget = Budget(10, 4, None, None, max_gpu_hours=10.0)
    one_gpu = TrialResources(gpus=1.0, cpus=1.0)
    done = [TrialRecord(0, {}, TrialState.SUCCEEDED, [1.0], started_at=0.0, finished_at=2 * HOUR)]
    assert trials_within_budget(budget, budget_usage([], one_gpu, 0.0), one_gpu) == 1  # no estimate: one
    running = [TrialRecord(0, {}, TrialState.RUNNING, None, started_at=0.0)]
    assert trials_within_budget(budget, budget_usage(running, one_gpu, HOUR), one_gpu) == 0
    assert trials_within_budget(budget, budget_usage(done, one_gpu, 2 * HOUR), one_gpu) == 4  # 2 + 4*2 <= 10
    half_way = [*done, TrialRecord(1, {}, TrialState.RUNNING, None, started_at=2 * HOUR)]
    # 2 used + 1 run so far + 1 still to come for the running trial = 4; 3 more trials of 2 fit in 10.
    assert trials_within_budget(budget, budget_usage(half_way, one_gpu, 3 * HOUR), one_gpu) == 3
    assert trials_within_budget(Budget(10, 4, None, None), budget_usage(done, one_gpu, 0.0), one_gpu) is None


def test_a_gpu_hour_budget_smaller_than_two_trials_stops_the_job_after_the_first(
    make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec(budget={"maxTrials": 10, "parallelism": 3, "maxGpuHours": 1.5},
                     trial={"template": gpu_template(gpus="1")})
    engine = Engine(spec)
    assert engine.launchable(running=0, now=0.0) == 1
    first = engine.ask(now=0.0)
    assert engine.launchable(running=1, now=HOUR / 2) == 0 and engine.stop_decision(HOUR / 2) is None
    engine.tell_succeeded(first.number, {"ndcg_at_10": 0.5}, now=HOUR)
    decision = engine.stop_decision(now=HOUR)
    assert decision is not None and decision.reason == "BudgetExhausted" and decision.succeeded
    assert decision.message == ("after 1 trial: 1 of 1.5 GPU-hours used (maxGpuHours, a trial takes about 1 "
                                "GPU-hours): the next trial would likely exceed the budget")
    assert engine.launchable(running=0, now=HOUR) == 0
    assert engine.budget_usage(HOUR).gpu_hours == pytest.approx(1.0)
    assert Engine(spec, engine.records).stop_decision(now=HOUR) == decision


def test_a_spent_budget_without_a_succeeded_trial_fails_the_job(make_spec: Callable[..., JobSpec]) -> None:
    spec = make_spec(budget={"maxTrials": 10, "maxCpuHours": 1.0})
    engine = Engine(spec)
    engine.tell_failed(engine.ask(now=0.0).number, "Error", "exit code 1", now=2 * HOUR)
    decision = engine.stop_decision(now=2 * HOUR)
    assert decision is not None and decision.reason == "BudgetExhausted" and not decision.succeeded
    assert "2 of 1 CPU-hours used (maxCpuHours" in decision.message


def test_hour_budgets_must_be_positive_and_readable(make_spec: Callable[..., JobSpec]) -> None:
    with pytest.raises(SpecError) as error:
        make_spec(budget={"maxGpuHours": 0, "maxCpuHours": "1e-5"})
    assert error.value.problems == [
        "spec.budget.maxGpuHours: must be > 0 hours (got 0)",
        "spec.budget.maxCpuHours: must be a finite number (got '1e-5'); it is quoted, so YAML reads a string: "
        "write the number without quotes",
    ]
    with pytest.raises(SpecError) as error:
        make_spec(budget={"maxGpuHours": 2.0})
    assert error.value.problems == ["spec.budget.maxGpuHours: the trial template requests no nvidia.com/gpu: set "
                                    "resources.limits.nvidia.com/gpu on its containers, or use maxCpuHours"]
    with pytest.raises(SpecError, match="resources: not a Kubernetes quantity: 'lots'"):
        make_spec(budget={"maxCpuHours": 2.0}, trial={"template": gpu_template(cpu="lots")})
