"""The Kubernetes backend: a kopf operator that runs each TuningJob's trials as pods and Trial objects.

Layers, top to bottom: `handlers` (kopf wiring only) → `reconcile` (one level-based pass over one job)
→ `trials` / `pods` / `status` (pure builders of API objects) and `cluster` (the few API calls made).
"""
