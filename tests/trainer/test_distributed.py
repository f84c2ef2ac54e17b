"""Fast checks of the distributed pieces: the launcher's variables and how batches are dealt out to ranks."""

import pytest
import torch

from ktune_trainer.cli import main
from ktune_trainer.data import QueryGroup
from ktune_trainer.distributed import LaunchError, World
from ktune_trainer.evaluation import EncodedSplit
from ktune_trainer.training import TrainingConfig, training_batches

LAUNCH = {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}


def test_without_launcher_variables_the_trainer_is_one_process():
    world = World.from_env({})
    assert (world.rank, world.size, world.distributed, world.is_main) == (0, 1, False, True)


def test_launcher_variables_give_the_rank():
    world = World.from_env({**LAUNCH, "LOCAL_RANK": "0"})
    assert (world.rank, world.size, world.local_rank, world.distributed, world.is_main) == (1, 2, 0, True, False)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0: must be at least 1"),
        ({"RANK": "2"}, "RANK=2: must be in 0..1"),
        ({"MASTER_ADDR": ""}, "MASTER_ADDR unset"),
        ({"MASTER_ADDR": "", "MASTER_PORT": ""}, "MASTER_ADDR and MASTER_PORT unset"),
    ],
)
def test_inconsistent_launcher_variables_are_refused_naming_the_variable(change: dict[str, str], problem: str):
    with pytest.raises(LaunchError, match=problem.replace("(", r"\(").replace(".", r"\.")):
        World.from_env({**LAUNCH, **change})


def test_train_exits_2_on_bad_launcher_variables(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert main(["train", "--data", "synthetic:queries=20,seed=1"]) == 2
    assert "MASTER_ADDR unset" in capsys.readouterr().err


def _split(sizes: list[int]) -> EncodedSplit:
    groups = tuple(
        QueryGroup(f"q{number}", "query", tuple(f"p{i}" for i in range(size)), ("text",) * size, (1.0,) * size)
        for number, size in enumerate(sizes)
    )
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    features = tuple({"input_ids": [1]} for _ in range(offsets[-1]))
    return EncodedSplit(groups, features, torch.ones(offsets[-1]), tuple(offsets))


SIZES = [3, 9, 4, 12, 5, 7, 2, 8, 6, 11, 3]


@pytest.mark.parametrize("loss", ["listwise", "pointwise-mse"])
def test_queries_are_dealt_out_whole_and_every_rank_runs_the_same_steps(loss: str):
    split = _split(SIZES)
    config = TrainingConfig(loss=loss, batch_size=16)
    ranks = training_batches(split, config, epoch=1, world_size=2)
    assert len(ranks) == 2 and len(ranks[0]) == len(ranks[1])
    owner: dict[int, int] = {}
    for rank, batches in enumerate(ranks):
        for pairs, sizes in batches:
            assert sum(sizes) == len(pairs)
            assert len(pairs) <= 8 or len(sizes) == 1  # ceil(16 / 2) pairs per rank and step, or one query
            for pair in pairs:
                query = next(g for g in range(len(SIZES)) if pair in split.group_slice(g))
                assert owner.setdefault(query, rank) == rank, f"query {query} is on two ranks"
    assert set(owner) == set(range(len(SIZES)))
    if loss == "listwise":  # a query's candidates sit together in one batch, in order
        for batches in ranks:
            for pairs, sizes in batches:
                start = 0
                for size in sizes:
                    group = pairs[start : start + size]
                    assert group == list(range(group[0], group[0] + size))
                    start += size


def test_one_rank_keeps_the_single_process_batches():
    split = _split(SIZES)
    config = TrainingConfig(loss="listwise", batch_size=16)
    (only,) = training_batches(split, config, epoch=2, world_size=1)
    assert sorted(pair for pairs, _ in only for pair in pairs) == list(range(sum(SIZES)))
    assert training_batches(split, config, epoch=2) == [only]
    assert training_batches(split, config, epoch=3) != [only]  # reshuffled each epoch
