"""`metricsSource: {type: logs}` on the real control plane: the operator reads each trial's log through the API's
`pods/log` (proxied by kube-apiserver to the node agent's containerLogs), with a trainer that only prints
`epoch=1 ndcg_at_10=0.31` lines: no result, no `/metrics`. The same job under `ktune run`, and bad input."""

import json
from pathlib import Path

import pytest

from ktune.algorithms import load_tuningjob
from ktune.log_metrics import MAX_LINE_CHARS, MAX_NAMES
from tests.cluster.controlplane import Cluster
from tests.local.jobs import run_locally
from tests.log_trainer import log_job
from tests.operator.operator_harness import OperatorProcess, apply, get, trials_of, wait_finished

pytestmark = pytest.mark.cluster


def score(x: float) -> float:
    return 1.0 - (x - 0.3) ** 2


def test_a_trainer_that_only_prints_succeeds_with_the_right_best_trial_and_is_pruned_as_under_ktune_run(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    manifest = log_job("printing", epochs=4, epoch_seconds=1.5)
    manifest["metadata"]["namespace"] = namespace
    apply(cluster, manifest)
    job = wait_finished(cluster, namespace, "printing", timeout=420, operator=operator)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    assert job["status"]["bestTrial"]["number"] == 0
    assert job["status"]["bestTrial"]["value"] == pytest.approx(1.0)  # the last line's value, with no result
    trials = trials_of(cluster, namespace, "printing")
    states = {number: trial["status"]["state"] for number, trial in trials.items()}
    assert states == {0: "Succeeded", 1: "Succeeded", 2: "Pruned", 3: "Pruned"}
    for number, trial in trials.items():
        x = trial["spec"]["params"]["x"]
        intermediate = {item["step"]: item["value"] for item in trial["status"]["intermediate"]}
        assert intermediate, f"trial {number} heard no step"
        for step, value in intermediate.items():  # every step heard is one the trainer printed, at its epoch
            assert value == pytest.approx(score(x) * step / 4, abs=1e-6)
    assert trials[1]["status"]["metrics"]["loss"] == pytest.approx(1 - score(0.35), abs=1e-6)

    outcome = run_locally(load_tuningjob(log_job("printing", epochs=4, epoch_seconds=1.5)), tmp_path / "run")
    assert {record.number: record.state.value for record in outcome.records} == states


@pytest.mark.parametrize(("flags", "state", "reason", "warning"), [
    (("--garbage",), "Succeeded", None, None),
    (("--json", "--nan"), "Failed", "InvalidObjective", None),
    (("--long-line=1000000",), "Succeeded", None, f"longer than {MAX_LINE_CHARS} characters"),
    (("--names=10000",), "Succeeded", None, f"beyond the first {MAX_NAMES} distinct ones"),
], ids=["garbage", "nan", "1MB-line", "10000-names"])
def test_bad_log_input_ends_in_its_documented_state(cluster: Cluster, namespace: str, operator: OperatorProcess,
                                                    flags: tuple[str, ...], state: str, reason: str | None,
                                                    warning: str | None) -> None:
    manifest = log_job("bad", *flags, epochs=2, epoch_seconds=1.0, xs=(0.3,))
    manifest["metadata"]["namespace"] = namespace
    apply(cluster, manifest)
    wait_finished(cluster, namespace, "bad", timeout=300, operator=operator)
    (trial,) = trials_of(cluster, namespace, "bad").values()
    assert (trial["status"]["state"], trial["status"].get("reason")) == (state, reason), trial["status"]
    assert len(trial["status"].get("metrics") or {}) <= MAX_NAMES + 2
    if state == "Succeeded":
        assert trial["status"]["value"] == pytest.approx(1.0)
    events = [event for event in get(cluster, "events", namespace)["items"]
              if event["reason"] == "MetricsLogIgnored"]
    if warning is None:
        assert events == []
    else:
        assert events and all(event["type"] == "Warning" for event in events)
        assert any(warning in event["message"] for event in events), json.dumps(events)[:2000]
        assert {event["involvedObject"]["kind"] for event in events} == {"Trial"}
