"""The cross-encoder: a sequence-classification transformer with one relevance score per pair.

``tiny-bert`` is built offline: a small ``BertConfig`` and a WordPiece tokenizer trained on the
training text. Any other ``--model`` is a Hugging Face model name or a local directory, loaded
with ``AutoModelForSequenceClassification`` (a fresh one-output head when the checkpoint has none).
transformers is imported here, lazily, because importing it costs seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

TINY_BERT = "tiny-bert"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Small enough for a trial to train in about a minute on two CPU cores, big enough to learn
# synonyms and categories that BM25 cannot see.
class _BertSize(TypedDict):
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int


TINY_BERT_SIZE: _BertSize = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "intermediate_size": 128}
# BERT's usual 0.02 leaves a model this small on a long plateau before it learns to match query
# tokens with product tokens; a wider initialisation breaks that symmetry within a few hundred steps.
TINY_BERT_INITIALIZER_RANGE = 0.2
TINY_VOCAB_SIZE = 4000
# Config attributes that hold dropout probabilities in common encoder architectures.
DROPOUT_ATTRIBUTES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


class ModelError(ValueError):
    """The model or tokenizer cannot be loaded; the message says which and why."""


@dataclass
class Ranker:
    """A model and its tokenizer; `source` is what `--model` named."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers fast tokenizer
    source: str

    @property
    def parameter_count(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())


def train_wordpiece_tokenizer(texts: Iterable[str], max_length: int, vocab_size: int = TINY_VOCAB_SIZE) -> Any:
    """A BERT-style WordPiece tokenizer trained on `texts`, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=2, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def build_tiny_bert(texts: Iterable[str], max_length: int, dropout: float) -> Ranker:
    """A small BERT with freshly initialised weights (seed torch before calling for repeatability)."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = train_wordpiece_tokenizer(texts, max_length)
    config = BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_length,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=TINY_BERT_INITIALIZER_RANGE,
        **TINY_BERT_SIZE,
    )
    config.num_labels = 1  # a property of every config (transformers 5 declares no such constructor argument)
    return Ranker(BertForSequenceClassification(config), tokenizer, TINY_BERT)


def load_pretrained(source: str, dropout: float | None) -> Ranker:
    """A hub model name or local directory as a one-score cross-encoder."""
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()  # "newly initialised classifier" is expected here
    try:
        config = AutoConfig.from_pretrained(source, num_labels=1)
        if dropout is not None:
            for attribute in DROPOUT_ATTRIBUTES:
                if hasattr(config, attribute):
                    setattr(config, attribute, dropout)
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, config=config)
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"--model {source}: cannot load model or tokenizer: {first_line}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return Ranker(model, tokenizer, source)


def build_ranker(source: str, training_texts: Iterable[str], max_length: int, dropout: float | None) -> Ranker:
    """``tiny-bert`` (trained tokenizer + fresh weights) or a pretrained model by name or path."""
    if source == TINY_BERT:
        return build_tiny_bert(training_texts, max_length, 0.1 if dropout is None else dropout)
    return load_pretrained(source, dropout)


def save_ranker(ranker: Ranker, directory: Path) -> None:
    """Saves what a search team deploys: model weights, config and tokenizer (loadable with Auto*)."""
    directory.mkdir(parents=True, exist_ok=True)
    ranker.model.save_pretrained(directory)
    ranker.tokenizer.save_pretrained(directory)
