"""Each benchmark at a tiny scale produces its JSON and Markdown with well-formed numbers (no timing checks)."""

import json
import math
from pathlib import Path

import torch

from bench import engine_latency, operator_scale, search_efficiency, trainer_throughput
from tests.cluster.controlplane import Cluster
from tests.operator.operator_harness import install_manifests

torch.set_num_threads(1)


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def read(out_dir: Path, name: str) -> dict:
    assert (out_dir / f"{name}.md").read_text().startswith("| ")
    return json.loads((out_dir / f"{name}.json").read_text())


def test_trainer_throughput_reports_both_systems_rates_and_their_ratio(tmp_path: Path) -> None:
    trainer_throughput.main(["--queries", "12", "--repeats", "1", "--eval-repeats", "2", "--max-length", "32",
                             "--threads", "1", "--out-dir", str(tmp_path), "--name", "tt"])
    result = read(tmp_path, "tt")
    for system in ("ktune", "hf"):
        assert positive(result["best"][system]["train_pairs_per_second"])
        assert positive(result["best"][system]["eval_pairs_per_second"])
    ratio = result["ratio_ktune_over_hf"]["train_pairs_per_second"]
    assert math.isclose(ratio, result["best"]["ktune"]["train_pairs_per_second"]
                        / result["best"]["hf"]["train_pairs_per_second"])


def test_engine_latency_reports_ask_and_rebuild_times_per_sampler_and_size(tmp_path: Path) -> None:
    engine_latency.main(["--samplers", "random,tpe,cmaes", "--sizes", "5,10", "--asks", "1",
                         "--out-dir", str(tmp_path), "--name", "el"])
    result = read(tmp_path, "el")
    assert set(result["samplers"]) == {"random", "tpe", "cmaes"}
    assert result["samplers"]["cmaes"]["history"] == "driven"
    for sampler in result["samplers"].values():
        for point in sampler["sizes"].values():
            assert point["reached"]
            assert positive(point["ask_ms_median"]) and positive(point["rebuild_seconds"])


def test_search_efficiency_reports_every_method_with_curves_and_the_headline(tmp_path: Path) -> None:
    search_efficiency.main(["--methods", "random,tpe+median", "--trials", "2", "--seeds", "1", "--queries", "12",
                            "--epochs", "2", "--max-train-pairs", "40", "--max-length", "32", "--workers", "1",
                            "--out-dir", str(tmp_path), "--name", "se"])
    result = read(tmp_path, "se")
    assert result["complete"]
    for method in ("random", "tpe+median"):
        summary = result["summary"][method]
        assert 0 <= summary["checkpoints"]["2"]["best_mean"] <= 1
        assert positive(summary["checkpoints"]["2"]["seconds_mean"])
        assert 0 <= summary["best_test_mean"] <= 1
    # random search always reaches its own best, at or before its last trial
    assert 1 <= result["summary"]["random"]["reach_random_best"]["trials_mean"] <= 2


def test_operator_scale_measures_turnaround_requests_and_operator_usage(
    cluster: Cluster, node_agent: object, namespace: str, tmp_path: Path
) -> None:
    args = operator_scale.parse_args(["--jobs", "1", "--trials", "3", "--parallelism", "1",
                                      "--reconcile-interval", "0.5", "--timeout", "90"])
    result = operator_scale.measure(cluster, install_manifests(cluster), namespace, args, tmp_path / "operator.log")
    assert result["succeeded_trials"] == 3
    assert result["pod_turnaround_seconds"]["count"] == 2  # the last pod has no successor
    assert result["pod_turnaround_seconds"]["p50"] >= 0
    assert result["api_requests"]["by_resource_verb"]["pods POST"] == 3
    assert positive(result["api_requests"]["per_trial"])
    assert positive(result["operator"]["cpu_seconds"]) and positive(result["operator"]["peak_rss_mib"])
    assert result["largest_tuningjob_bytes"] > 1000
    assert operator_scale.table(result).startswith("| ")
