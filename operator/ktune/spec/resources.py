"""What one trial requests, read from its pod template: GPUs (`nvidia.com/gpu`) and CPUs.

Each container's request counts, or its limit when it sets no request (as Kubernetes does); a template
that requests no CPU counts as 1 CPU, the default `ktune run` accounts every local trial process with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_CPUS = 1.0
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(m|k|M|G|Ki|Mi|Gi)?$")
_SUFFIXES = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3}


@dataclass(frozen=True)
class TrialResources:
    """What one trial requests."""

    gpus: float
    cpus: float


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2", 1.5) as a number; ValueError on anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def _requested(container: Mapping[str, Any], resource: str) -> float | None:
    resources = container.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise ValueError(f"a container's resources must be a mapping (got {type(resources).__name__})")
    for kind in ("requests", "limits"):
        amounts = resources.get(kind) or {}
        if not isinstance(amounts, Mapping):
            raise ValueError(f"resources.{kind} must be a mapping (got {type(amounts).__name__})")
        if resource in amounts:
            return quantity(amounts[resource])
    return None


def template_resources(template: Mapping[str, Any], pods: int = 1) -> TrialResources:
    """The GPUs and CPUs a trial's pod template requests (summed over its containers), times the `pods` that run
    it at once (a Job trial's parallelism: every pod of a distributed trial holds its GPUs the whole time)."""
    containers = (template.get("spec") or {}).get("containers") or []
    gpus = [_requested(container, GPU_RESOURCE) for container in containers]
    cpus = [_requested(container, "cpu") for container in containers]
    set_cpus = [cpu for cpu in cpus if cpu is not None]
    cpus_per_pod = sum(set_cpus) if set_cpus else DEFAULT_CPUS
    return TrialResources(gpus=pods * sum(gpu or 0.0 for gpu in gpus), cpus=pods * cpus_per_pod)
