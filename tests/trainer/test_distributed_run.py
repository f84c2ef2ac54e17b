"""The trainer on two CPU processes (gloo): under torchrun and under a launcher that sets the variables
itself, as a Kubeflow PyTorchJob does (which also lets a test give each rank its own port and signal)."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.trainer.test_training_run import TRAINER, _free_port, _quick, _scrape, easy_data  # noqa: F401

pytestmark = pytest.mark.slow
TORCHRUN = str(Path(sys.executable).parent / "torchrun")
# Short runs: 20 whole queries (400 pairs), 2 epochs.
QUICK_RUN = ["--max-train-pairs", "400", "--epochs", "2", "--batch-size", "40"]
TIMING_KEYS = {"pairs_per_second", "train_seconds"}


@dataclass
class Rank:
    process: subprocess.Popen[str]
    port: int
    result: Path
    stdout: Path
    stderr: Path

    def last_error_line(self) -> str:
        return self.stderr.read_text().strip().splitlines()[-1]


def _launch(tmp_path: Path, args_per_rank: list[list[str]]) -> list[Rank]:
    """One process per rank with WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set, each with
    its own metrics port and result path, so that anything rank 1 served or wrote would be seen."""
    master_port = _free_port()
    ranks = []
    for rank, args in enumerate(args_per_rank):
        port = _free_port()
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "WORLD_SIZE": str(len(args_per_rank)),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(master_port),
            "KTUNE_METRICS_HOST": "127.0.0.1",
            "KTUNE_METRICS_PORT": str(port),
            "KTUNE_RESULT_PATH": str(tmp_path / f"result-{rank}.json"),
        }
        stdout, stderr = tmp_path / f"stdout-{rank}", tmp_path / f"stderr-{rank}"
        with stdout.open("w") as out, stderr.open("w") as err:
            process = subprocess.Popen([TRAINER, "train", *args], env=env, stdout=out, stderr=err, text=True)
        ranks.append(Rank(process, port, tmp_path / f"result-{rank}.json", stdout, stderr))
    return ranks


def _wait_all(ranks: list[Rank], timeout: float) -> list[int]:
    try:
        return [rank.process.wait(timeout=timeout) for rank in ranks]
    finally:
        for rank in ranks:
            if rank.process.poll() is None:
                rank.process.kill()
                rank.process.wait()


def _comparable(result: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in result.items() if name not in TIMING_KEYS}


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, easy_data: str) -> tuple[list[Rank], list[int], list[bool]]:  # noqa: F811
    """Two ranks with the same arguments, scraped while they run: (ranks, exit codes, rank 1 ever answered)."""
    tmp_path = tmp_path_factory.mktemp("launched")
    ranks = _launch(tmp_path, [[*_quick(easy_data), *QUICK_RUN]] * 2)
    main_reported, rank_1_answered = False, False
    deadline = time.monotonic() + 600
    while any(rank.process.poll() is None for rank in ranks) and time.monotonic() < deadline:
        samples = _scrape(ranks[0].port)
        main_reported = main_reported or bool(samples and samples.get(("ktune_trial_step", None), 0) >= 1)
        rank_1_answered = rank_1_answered or _scrape(ranks[1].port) is not None
        time.sleep(0.2)
    return ranks, _wait_all(ranks, timeout=60), [main_reported, rank_1_answered]


def test_only_rank_0_serves_metrics_and_writes_the_result(launched: tuple[list[Rank], list[int], list[bool]]):
    ranks, codes, (main_reported, rank_1_answered) = launched
    assert codes == [0, 0], [rank.stderr.read_text()[-2000:] for rank in ranks]
    assert main_reported, "rank 0 never showed an evaluation on /metrics"
    assert not rank_1_answered, "rank 1 served /metrics"
    assert not ranks[1].result.exists() and ranks[1].stdout.read_text() == ""
    result = json.loads(ranks[0].result.read_text())
    assert json.loads(ranks[0].stdout.read_text().strip().splitlines()[-1]) == result
    assert "rank 0 of 2" in ranks[0].stderr.read_text()


def test_the_same_seed_gives_the_same_result_at_world_size_2_under_torchrun(
    launched: tuple[list[Rank], list[int], list[bool]], tmp_path: Path, easy_data: str  # noqa: F811
):
    ranks, codes, _ = launched
    assert codes == [0, 0]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "KTUNE_METRICS_HOST": "127.0.0.1",
        "KTUNE_METRICS_PORT": str(_free_port()),
        "KTUNE_RESULT_PATH": str(tmp_path / "result.json"),
    }
    done = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node", "2", TRAINER, "train", *_quick(easy_data), *QUICK_RUN],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads(ranks[0].result.read_text())
    second = json.loads((tmp_path / "result.json").read_text())
    assert _comparable(second) == _comparable(first)
    assert set(first) > TIMING_KEYS


@pytest.mark.parametrize("signalled", [1, 0])
def test_sigterm_to_one_rank_ends_both_with_exit_143(tmp_path: Path, easy_data: str, signalled: int):  # noqa: F811
    ranks = _launch(tmp_path, [[*_quick(easy_data), "--epochs", "50", "--eval-steps", "2"]] * 2)
    try:
        deadline = time.monotonic() + 300
        step = 0.0
        while step < 2 and all(rank.process.poll() is None for rank in ranks) and time.monotonic() < deadline:
            samples = _scrape(ranks[0].port)
            step = samples.get(("ktune_trial_step", None), 0.0) if samples else 0.0
            time.sleep(0.2)
        assert step >= 2, "the ranks did not get into training: " + ranks[0].stderr.read_text()[-2000:]
        ranks[signalled].process.send_signal(signal.SIGTERM)
    finally:
        codes = _wait_all(ranks, timeout=60)
    assert codes == [143, 143]
    other = 1 - signalled
    assert ranks[signalled].last_error_line() == "ktune-trainer train: stopped by SIGTERM"
    assert ranks[other].last_error_line() == f"ktune-trainer train: stopped by SIGTERM sent to rank {signalled}"
    assert not ranks[0].result.exists() and not ranks[1].result.exists()


def test_a_non_finite_loss_on_rank_1_ends_both_with_exit_3(tmp_path: Path, easy_data: str):  # noqa: F811
    # As in the single-process test, a huge learning rate makes the loss diverge, here on rank 1 only
    # (each rank's optimizer steps its own copy of the weights).
    normal = [*_quick(easy_data), *QUICK_RUN]
    ranks = _launch(tmp_path, [normal, [*normal, "--learning-rate", "1e30"]])
    codes = _wait_all(ranks, timeout=600)
    assert codes == [3, 3], [rank.stderr.read_text()[-2000:] for rank in ranks]
    assert ranks[1].last_error_line().startswith("ktune-trainer train: training loss became")
    assert "rank 1 met a non-finite loss or metric" in ranks[0].last_error_line()
    assert not ranks[0].result.exists() and not ranks[1].result.exists()
