"""ktune: Kubernetes-native hyperparameter tuning for BERT ranking models."""

import importlib.metadata

# The version lives in pyproject.toml alone (`scripts/set-version X.Y.Z` changes it and its copies in the chart,
# manifests and examples); the installed distribution's metadata brings it here.
__version__ = importlib.metadata.version("ktune")
