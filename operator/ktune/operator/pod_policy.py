"""The admin's trial pod policy: with `forbid_privileged_trials`, trial templates may not take over their node.

A TuningJob author can put anything into `spec.trial.template` (or each pod template of `spec.trial.resource`: a
Job's, every replica's of a Kubeflow job); where cluster admins do not enforce Pod Security Admission on the
namespace, this setting refuses the ways out of a container listed in `forbidden_fields`, in every one of them.
"""

from collections.abc import Mapping
from typing import Any

from ktune.spec import TrialSpec
from ktune.spec.trial import trial_pod_templates

TEMPLATE_PATH = "spec.trial.template.spec"
HOW_TO_FIX = "forbidden by the operator's trial pod policy (setting forbidPrivilegedTrials); remove it"
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
# The one capability Pod Security's restricted profile lets a container add: binding ports below 1024.
HARMLESS_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def trial_forbidden_fields(trial: TrialSpec) -> list[str]:
    """`forbidden_fields` of every pod template the trial runs, each problem named by its template's path."""
    return [problem for path, template, _ in trial_pod_templates(trial)
            for problem in forbidden_fields(template, f"{path}.spec")]


def forbidden_fields(template: Mapping[str, Any], path: str = TEMPLATE_PATH) -> list[str]:
    """One problem per field of a PodTemplateSpec that asks for the node or for privileges, named from `path` (where
    the template's pod spec is).

    Pod: hostNetwork/hostPID/hostIPC, hostPath volumes, nodeName (which bypasses the scheduler), and in
    `securityContext` runAsUser 0 or an Unconfined seccomp profile. Each container, init container and
    ephemeral container: privileged, allowPrivilegeEscalation true, capabilities added beyond
    NET_BIND_SERVICE, runAsUser 0, an Unconfined seccomp profile, a procMount other than Default, hostPort.
    """
    spec = _mapping(template.get("spec"))
    paths = [field for field in HOST_NAMESPACES if spec.get(field) is True]
    if spec.get("nodeName"):
        paths.append("nodeName")
    paths += [f"securityContext.{field}" for field in _root_or_unconfined(_mapping(spec.get("securityContext")))]
    for index, volume in enumerate(_list(spec.get("volumes"))):
        if isinstance(volume, Mapping) and "hostPath" in volume:
            paths.append(f"volumes[{index}].hostPath")
    for kind in CONTAINER_LISTS:
        for index, container in enumerate(_list(spec.get(kind))):
            container = _mapping(container)
            security = _mapping(container.get("securityContext"))
            where = f"{kind}[{index}]"
            paths += [f"{where}.securityContext.{field}" for field in _container_privileges(security)]
            for port_index, port in enumerate(_list(container.get("ports"))):
                if _mapping(port).get("hostPort"):
                    paths.append(f"{where}.ports[{port_index}].hostPort")
    return [f"{path}.{field}: {HOW_TO_FIX}" for field in paths]


def _root_or_unconfined(security: Mapping[str, Any]) -> list[str]:
    """The fields of a pod's or container's securityContext that run as root or without a seccomp filter."""
    found = []
    run_as_user = security.get("runAsUser")
    if run_as_user == 0 and not isinstance(run_as_user, bool):
        found.append("runAsUser")
    if _mapping(security.get("seccompProfile")).get("type") == "Unconfined":
        found.append("seccompProfile.type")
    return found


def _container_privileges(security: Mapping[str, Any]) -> list[str]:
    found = [field for field in ("privileged", "allowPrivilegeEscalation") if security.get(field) is True]
    added = _list(_mapping(security.get("capabilities")).get("add"))
    found += [f"capabilities.add[{index}]" for index, name in enumerate(added) if name not in HARMLESS_CAPABILITIES]
    found += _root_or_unconfined(security)
    if security.get("procMount") not in (None, "Default"):
        found.append("procMount")
    return found


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else empty: a garbled template is refused by the API server, not here."""
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
