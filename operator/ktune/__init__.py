"""ktune: Kubernetes-native hyperparameter tuning for BERT ranking models."""

__version__ = "0.1.0"
