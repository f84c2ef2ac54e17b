"""Real training runs of the console script: the trainer contract end to end."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

TRAINER = str(Path(sys.executable).parent / "ktune-trainer")
WORDS = [
    f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in ("bar", "dex", "fin", "gol", "zem")
]


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small ranking set a model can learn within a couple of hundred steps: the query names the
    one Exact product's first word. Untrained, a model ranks it at random."""
    rng = random.Random(11)
    rows = []
    for number in range(100):
        target = rng.choice(WORDS)
        others = rng.sample([word for word in WORDS if word != target], 19)
        split = "train" if number < 70 else "validation" if number < 85 else "test"
        for index, word in enumerate([target, *others]):
            rows.append(
                {
                    "query_id": f"q{number}",
                    "query": target,
                    "product_id": f"p{number}-{index}",
                    "product_title": f"{word} {rng.choice(WORDS)} {rng.choice(WORDS)}",
                    "esci_label": "E" if index == 0 else "I",
                    "split": split,
                }
            )
    rng.shuffle(rows)
    path = tmp_path_factory.mktemp("data") / "easy.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _quick(data: str) -> list[str]:
    return ["--model", "tiny-bert", "--data", data, "--max-length", "16", "--seed", "7", "--dropout", "0"]


RESULT_KEYS = {
    "ndcg_at_10",
    "ndcg",
    "mrr_at_10",
    "recall_at_10",
    "eval_loss",
    "train_loss",
    "pairs_per_second",
    "test_ndcg_at_10",
    "test_ndcg",
    "test_mrr_at_10",
    "test_recall_at_10",
    "model_parameters",
    "train_seconds",
}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environ(tmp_path: Path, port: int, **params: str) -> dict[str, str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "KTUNE_METRICS_HOST": "127.0.0.1",
        "KTUNE_METRICS_PORT": str(port),
        "KTUNE_RESULT_PATH": str(tmp_path / "result.json"),
    }
    env.update({f"KTUNE_PARAM_{name.upper()}": value for name, value in params.items()})
    return env


def _scrape(port: int) -> dict[tuple[str, str | None], float] | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return {(s.name, s.labels.get("metric")): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_training_serves_metrics_while_it_runs_and_beats_the_untrained_model(tmp_path: Path, easy_data: str):
    port = _free_port()
    process = subprocess.Popen(
        [
            TRAINER,
            "train",
            *_quick(easy_data),
            "--epochs",
            "8",
            "--batch-size",
            "40",
            "--output-dir",
            str(tmp_path / "model"),
        ],
        env=_environ(tmp_path, port, learning_rate="0.002", loss="listwise"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    scrapes = []
    while process.poll() is None:
        samples = _scrape(port)
        if samples and samples.get(("ktune_trial_step", None), 0) >= 1:
            scrapes.append(samples)
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr

    assert scrapes, "no evaluation was visible on /metrics while training"
    steps = [samples[("ktune_trial_step", None)] for samples in scrapes]
    assert steps == sorted(steps) and set(steps) <= set(map(float, range(1, 9)))
    assert {name for (gauge, name) in scrapes[-1] if gauge == "ktune_trial_metric"} == {
        "ndcg_at_10",
        "ndcg",
        "mrr_at_10",
        "recall_at_10",
        "eval_loss",
        "train_loss",
        "pairs_per_second",
    }
    assert "learning_rate=0.002" in stderr and "loss=listwise" in stderr  # parameters from KTUNE_PARAM_*

    result = json.loads((tmp_path / "result.json").read_text())
    assert json.loads(stdout.strip().splitlines()[-1]) == result
    assert set(result) == RESULT_KEYS
    assert len((tmp_path / "result.json").read_bytes()) < 4096
    assert result["model_parameters"] > 10_000
    saved = {path.name for path in (tmp_path / "model").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= saved, saved

    baseline = subprocess.run(
        [TRAINER, "baseline", *_quick(easy_data), "--loss", "listwise"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert baseline.returncode == 0, baseline.stderr
    untrained = json.loads(baseline.stdout.strip().splitlines()[-1])["untrained tiny-bert"]
    assert result["ndcg_at_10"] > untrained["ndcg_at_10"] + 0.1


def test_sigterm_stops_training_within_seconds_with_exit_143(tmp_path: Path, easy_data: str):
    port = _free_port()
    process = subprocess.Popen(
        [TRAINER, "train", *_quick(easy_data), "--epochs", "50"],
        env=_environ(tmp_path, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while _scrape(port) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the trainer ended before it could be stopped"
    time.sleep(1.0)  # well inside the first epoch
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    assert stderr.strip().splitlines()[-1] == "ktune-trainer train: stopped by SIGTERM"
    assert not (tmp_path / "result.json").exists()


def test_a_diverging_loss_ends_the_run_with_exit_3(tmp_path: Path, easy_data: str):
    done = subprocess.run(
        [TRAINER, "train", *_quick(easy_data), "--learning-rate", "1e30", "--max-train-pairs", "200"],
        env=_environ(tmp_path, _free_port()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ktune-trainer train: training loss became") and "lower --learning-rate" in last
    assert not (tmp_path / "result.json").exists()
