"""Bad TuningJobs beyond the shared corpus (tests/fixtures/tuningjobs/invalid, pinned by
tests/operator/test_crd_corpus.py): wrong types, huge numbers, unicode names, megabyte-long args and more.
Each is refused by `kubectl apply` (schema, CEL, request size) or stored and marked `Invalid` by the operator
with a message naming the field; the operator survives them all and then still runs a valid job to the end.
"""

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import (
    OperatorProcess,
    apply,
    condition,
    get,
    stand_in_job,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.cluster

Mutation = Callable[[dict[str, Any]], None]
MEGABYTE = 1024 * 1024


def set_in(path: str, value: Any) -> Mutation:
    """A mutation setting `spec.<path>` (dot-separated; digits index lists) to `value`."""
    def mutate(job: dict[str, Any]) -> None:
        keys = [int(key) if key.isdigit() else key for key in path.split(".")]
        parent = job["spec"]
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = value
    return mutate


def container(**fields: Any) -> Mutation:
    def mutate(job: dict[str, Any]) -> None:
        job["spec"]["trial"]["template"]["spec"]["containers"][0].update(fields)
    return mutate


def rename(name: str) -> Mutation:
    def mutate(job: dict[str, Any]) -> None:
        job["metadata"]["name"] = name
    return mutate


# (case, mutation, text the refusal or the Invalid condition must contain: the field it is about)
CASES: list[tuple[str, Mutation, str]] = [
    ("max-trials-a-string", set_in("budget.maxTrials", "ten"), "maxTrials"),
    ("parallelism-a-float", set_in("budget.parallelism", 1.5), "parallelism"),
    ("parameters-a-string", set_in("parameters", "x from 0 to 1"), "parameters"),
    ("low-a-string", set_in("parameters.0.low", "zero"), "low"),
    ("log-a-string", set_in("parameters.0.log", "yes"), "log"),
    ("choices-a-map", set_in("parameters", [{"name": "x", "type": "categorical", "choices": {"a": 1}}]), "choices"),
    ("objective-a-list", set_in("objective", ["score", "maximize"]), "objective"),
    ("spec-null-trial", set_in("trial", None), "trial"),
    ("containers-a-string", set_in("trial.template.spec.containers", "trainer"), "containers"),
    ("max-trials-negative", set_in("budget.maxTrials", -1), "maxTrials"),
    ("max-trials-huge", set_in("budget.maxTrials", 10**30), "maxTrials"),
    ("retries-huge", set_in("trial.retries", 2**63), "retries"),
    ("deadline-huge", set_in("budget.activeDeadlineSeconds", 10**20), "activeDeadlineSeconds"),
    ("bounds-overflow-the-range", set_in("parameters.0", {"name": "x", "type": "float", "low": -1.0e308,
                                                          "high": 1.0e308}), "parameters[0]"),
    ("int-bounds-beyond-int64", set_in("parameters.0", {"name": "x", "type": "int", "low": 0, "high": 2**70}),
     "high"),
    ("unicode-job-name", rename("tüning-λ"), "metadata.name"),
    ("unicode-parameter-name", set_in("parameters.0.name", "λ"), "name"),
    ("unicode-metric-name", set_in("objective.metric", "ндцг"), "metric"),
    ("empty-sampler-name", set_in("sampler.name", ""), "sampler"),
    ("log-with-negative-low", set_in("parameters.0", {"name": "x", "type": "float", "low": -1.0, "high": 1.0,
                                                      "log": True}), "log"),
    ("grid-over-float-without-step", set_in("sampler", {"name": "grid"}), "grid"),
    ("over-the-annotation-limit-arg", container(args=["--junk=" + "w" * (1_200_000)]), "metadata.annotations"),
    ("megabyte-arg", container(args=["--junk=" + "x" * (2 * MEGABYTE)]), ""),
    ("four-megabyte-arg", container(args=["--junk=" + "y" * (4 * MEGABYTE)]), ""),
    ("ten-thousand-args", container(args=["--flag"] * 10_000 + ["z" * 200_000]), "metadata.annotations"),
]


def base_job(namespace: str, name: str) -> dict[str, Any]:
    return stand_in_job(name, namespace, budget={"maxTrials": 2, "parallelism": 2})


def test_every_bad_tuningjob_is_refused_at_apply_or_marked_invalid_naming_the_field_and_the_operator_survives(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    refused: dict[str, str] = {}
    stored: dict[str, tuple[str, str]] = {}
    for index, (case, mutate, field) in enumerate(CASES):
        job = copy.deepcopy(base_job(namespace, f"bad-{index}"))
        mutate(job)
        result = cluster.kubectl("apply", "-f", "-", input=json.dumps(job), check=False, timeout=120)
        if result.returncode != 0:
            message = result.stderr.strip()
            assert message, f"{case}: refused without a message"
            assert field in message, f"{case}: the refusal does not name {field!r}: {message[:600]}"
            refused[case] = message
        else:
            stored[case] = (job["metadata"]["name"], field)
    for case, (name, field) in stored.items():
        def marked_invalid(name: str = name) -> dict | None:
            invalid = condition(get(cluster, "tuningjob", namespace, name), "Invalid")
            return invalid if invalid and invalid["status"] == "True" else None

        invalid = wait_for(marked_invalid, 60, f"{case} to be marked Invalid", operator)
        assert field in invalid["message"], f"{case}: {invalid['message']}"
    assert operator.process.poll() is None, "the operator died on bad input"
    assert get(cluster, "trials", namespace)["items"] == [], "a bad job started trials"
    print(f"{len(CASES)} cases: {len(refused)} refused at apply, {len(stored)} marked Invalid")
    for case, message in refused.items():
        reason = next((line for line in message.splitlines() if "spec" in line or "too large" in line), message)
        print(f"  refused  {case}: {reason.strip()[:200]}")
    for case in stored:
        print(f"  invalid  {case}")

    # Without kubectl apply's last-applied annotation (capped at 256 KiB), a 1.6 MB body passes the API server's
    # 3 MiB request limit and its 2 MiB gRPC limit towards etcd, and reaches etcd, whose limit (1.5 MiB) refuses it.
    huge = base_job(namespace, "etcd-too-large")
    container(args=["--junk=" + "v" * 1_600_000])(huge)
    created = cluster.kubectl("create", "-f", "-", input=json.dumps(huge), check=False, timeout=120)
    assert created.returncode != 0 and "request is too large" in created.stderr, created.stderr[:600]
    print(f"  refused  kubectl create with a 1.6 MB arg: {created.stderr.strip()[:200]}")

    apply(cluster, stand_in_job("good-after-bad", namespace, budget={"maxTrials": 2, "parallelism": 2}))
    finished = wait_finished(cluster, namespace, "good-after-bad", 120, operator)
    assert finished["status"]["phase"] == "Succeeded"
