"""ktune_trainer: the reference ktune trainer, a BERT cross-encoder ranker for e-commerce search."""

__version__ = "0.1.0"
