"""`ktune run` and the operator judge trials by the same rules: one trial lifecycle (`ktune.trials`) for both."""

from pathlib import Path

import pytest

from ktune.algorithms import load_tuningjob
from tests.cluster.controlplane import Cluster
from tests.local.jobs import run_locally
from tests.operator.operator_harness import OperatorProcess, apply, stand_in_job, trials_of, wait_finished

pytestmark = pytest.mark.cluster
STEPS = 2


def score(x: float) -> float:
    return 1.0 - (x - 0.3) ** 2


@pytest.mark.parametrize("trainer_flag, state, reason", [
    ("--no-result", "Succeeded", None),  # judged on the metrics it last served
    ("--junk-result", "Failed", "InvalidResult"),
])
def test_a_trainer_is_judged_the_same_by_ktune_run_and_by_the_operator(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path, trainer_flag: str, state: str,
    reason: str | None,
):
    args = ["--steps", str(STEPS), "--step-seconds", "0.3", trainer_flag]
    manifest = stand_in_job("same-rules", namespace, args=args, budget={"maxTrials": 2, "parallelism": 2})
    apply(cluster, manifest)
    wait_finished(cluster, namespace, "same-rules", timeout=120, operator=operator)
    on_cluster = {number: (trial["spec"]["params"], trial["status"]["state"], trial["status"].get("reason"),
                           trial["status"].get("value"))
                  for number, trial in trials_of(cluster, namespace, "same-rules").items()}

    outcome = run_locally(load_tuningjob(manifest), tmp_path / "run")
    local = {record.number: (record.params, record.state.value, record.reason,
                             record.values[0] if record.values else None)
             for record in outcome.records}

    assert {n: judged[:3] for n, judged in local.items()} == {n: judged[:3] for n, judged in on_cluster.items()}
    assert {(trial_state, trial_reason) for _, trial_state, trial_reason, _ in local.values()} == {(state, reason)}
    for params, _, _, value in [*local.values(), *on_cluster.values()]:
        # Without a result, the value is the last one scraped: one of the steps the trainer served.
        served = [score(params["x"]) * step / STEPS for step in range(1, STEPS + 1)]
        assert value is None or any(value == pytest.approx(v) for v in served)
