"""An operator replaced mid-job gives each trial the verdict the one never restarted gives (#13 item 6).

Two fake clusters run the same job on the same inputs: in one the reconciler is replaced by a fresh one
(a restarted operator: it rebuilds its study from the Trial objects alone) while trials are past step 100;
in the other it never is. Each pass reads one more step of every running trial; a trial ends at its own
length. The Trials must end the same in both: same outcome, same steps, pruned at the same step.
"""

import copy
import json
from typing import Any

import pytest

from ktune import contract, metrics
from ktune.operator.trials import parse_history
from tests.operator.test_reconcile import NOW, Harness, job_body

RESTART_PASS = 145
MAX_TRIALS = 10


def length(number: int) -> int:
    """How many steps trial `number` runs when nothing prunes it."""
    return 120 + 29 * (number % 4)


def value(x: float, number: int, step: int) -> float:
    """A score that peaks early and settles at a level set by the trial's parameter."""
    return 0.2 + 0.7 * x + 0.3 * 0.95 ** step + 0.02 * ((7 * number + 3 * step) % 5)


class Trainers:
    """What the pods of one fake cluster report: one step more at each scrape; a pod ends at its length."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.steps: dict[str, int] = {}  # pod IP -> the next step it reports

    def scrape(self, url: str, timeout: float) -> metrics.TrialMetrics:
        ip = url.split("//")[1].split(":")[0]
        pod = self._pod(ip)
        if pod is None:
            return metrics.TrialMetrics()
        number, x = self._trial(pod)
        step = self.steps.setdefault(ip, 0)
        self.steps[ip] = step + 1
        return metrics.TrialMetrics(values={"score": value(x, number, step), "loss": 1.0}, step=step)

    def _pod(self, ip: str) -> dict[str, Any] | None:
        return next((pod for pod in self.harness.cluster.pods.values()
                     if pod.get("status", {}).get("podIP") == ip), None)

    def _trial(self, pod: dict[str, Any]) -> tuple[int, float]:
        number = int(pod["metadata"]["labels"][contract.LABEL_TRIAL])
        trial = self.harness.cluster.trials[f"job-{number}"]
        return number, float(trial["spec"]["params"]["x"])

    def move_pods(self) -> None:
        """Start new pods (each on its own IP) and end those that reported their last step."""
        for name, pod in list(self.harness.cluster.pods.items()):
            number, x = self._trial(pod)
            ip = f"10.0.{number}.{pod['metadata']['name'].rsplit('-', 1)[1]}"
            if pod["status"]["phase"] == "Pending":
                self.harness.cluster.run_pod(name, ip=ip)
            elif pod["status"]["phase"] == "Running" and self.steps.get(ip, 0) >= length(number):
                final = {"score": value(x, number, length(number) - 1), "loss": 1.0}
                self.harness.cluster.finish_pod(name, json.dumps(final))


def run(body: dict[str, Any], restart_at: int | None) -> tuple[dict[str, Any], list[int]]:
    """Run the job to its end; the Trials' outcomes and the steps of the running trials at `restart_at`."""
    harness = Harness(copy.deepcopy(body))
    trainers = Trainers(harness)
    harness.scrape = trainers.scrape
    harness.reconciler = harness.fresh_reconciler()
    running_steps: list[int] = []
    for tick in range(2000):
        if tick == restart_at:
            running_steps = [len(parse_history(trial["status"].get("intermediateHistory", "")))
                             for trial in harness.cluster.trials.values() if trial["status"]["state"] == "Running"]
            harness.reconciler = harness.fresh_reconciler()
        if harness.tick(now=NOW + tick).get("phase") == "Succeeded":
            break
        trainers.move_pods()
    else:
        pytest.fail("the job did not finish in 2,000 passes")
    outcomes = {name: {key: trial["status"].get(key) for key in ("state", "reason", "message", "intermediateHistory")}
                for name, trial in sorted(harness.cluster.trials.items())}
    return outcomes, running_steps


PRUNERS = {
    "successive_halving": ({"name": "successive_halving", "options": {"reduction_factor": 3}}, False),
    "median": ({"name": "median", "options": {"n_startup_trials": 1, "n_min_trials": 3}}, False),
    "multi-objective successive_halving": (
        {"name": "successive_halving", "metric": "score", "options": {"reduction_factor": 3}}, True),
}


@pytest.mark.parametrize("scenario", list(PRUNERS))
def test_a_restarted_operator_prunes_the_trials_the_running_one_prunes_at_the_same_steps(scenario: str) -> None:
    pruner, multi = PRUNERS[scenario]
    body = job_body(max_trials=MAX_TRIALS, parallelism=2, pruner=pruner)
    if multi:
        del body["spec"]["objective"]
        body["spec"]["objectives"] = [{"metric": "score", "direction": "maximize"},
                                      {"metric": "loss", "direction": "minimize"}]

    never_restarted, _ = run(body, restart_at=None)
    restarted, running_steps = run(body, restart_at=RESTART_PASS)

    assert running_steps and max(running_steps) > 100, "the restart must come while a trial is past step 100"
    assert restarted == never_restarted
    states = [outcome["state"] for outcome in never_restarted.values()]
    assert len(states) == MAX_TRIALS and "Pruned" in states and "Succeeded" in states
