"""The admin's trial pod policy: with `forbid_privileged_trials`, trial templates may not take over their node.

A TuningJob author can put anything into `spec.trial.template`; where cluster admins do not enforce Pod
Security Admission on the namespace, this setting refuses the four ways out of a container named below.
"""

from collections.abc import Mapping
from typing import Any

TEMPLATE_PATH = "spec.trial.template.spec"
HOW_TO_FIX = "forbidden by the operator's trial pod policy (setting forbidPrivilegedTrials); remove it"
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def forbidden_fields(template: Mapping[str, Any]) -> list[str]:
    """One problem per privileged container, hostPath volume and host namespace in a PodTemplateSpec."""
    spec = template.get("spec") or {}
    problems = [f"{TEMPLATE_PATH}.{field}: {HOW_TO_FIX}" for field in HOST_NAMESPACES if spec.get(field) is True]
    for index, volume in enumerate(spec.get("volumes") or []):
        if isinstance(volume, Mapping) and "hostPath" in volume:
            problems.append(f"{TEMPLATE_PATH}.volumes[{index}].hostPath: {HOW_TO_FIX}")
    for kind in CONTAINER_LISTS:
        for index, container in enumerate(spec.get(kind) or []):
            security = (container.get("securityContext") or {}) if isinstance(container, Mapping) else {}
            if security.get("privileged") is True:
                problems.append(f"{TEMPLATE_PATH}.{kind}[{index}].securityContext.privileged: {HOW_TO_FIX}")
    return problems
