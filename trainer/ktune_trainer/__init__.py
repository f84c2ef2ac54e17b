"""ktune_trainer: the reference ktune trainer, a BERT cross-encoder ranker for e-commerce search."""

import importlib.metadata

# The trainer ships in the ktune distribution: its version is pyproject.toml's, read from the installed metadata.
__version__ = importlib.metadata.version("ktune")
