"""A trial's Pod: the job's template with the trainer contract injected, owned by its Trial object."""

import copy
from collections.abc import Mapping
from typing import Any

from ktune import contract
from ktune.trials.environment import contract_env

ATTEMPT_ANNOTATION = "ktune.dev/attempt"
METRICS_PORT_NAME = "ktune-metrics"
# Applied wherever the template leaves them unset (absent or null): a trainer needs none of the privileges they
# take away. The container defaults go to every container and init container (native sidecars included).
POD_SECURITY_DEFAULTS: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_DEFAULTS: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
SCRATCH_VOLUME = "ktune-tmp"


def trial_name(tuningjob: str, number: int) -> str:
    """The Trial object's name: deterministic, so that creating a trial twice is refused by the API server."""
    return f"{tuningjob}-{number}"


def trial_pod_name(tuningjob: str, number: int, attempt: int) -> str:
    """The name of one attempt's pod: deterministic for the same reason as `trial_name`."""
    return f"{tuningjob}-{number}-{attempt}"


def trial_labels(tuningjob: str, number: int) -> dict[str, str]:
    """The selector labels on everything ktune creates for one trial."""
    return {
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
        contract.LABEL_TUNINGJOB: tuningjob,
        contract.LABEL_TRIAL: str(number),
    }


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller ownerReference to `owner` (an API object): deleting the owner deletes what it owns."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller (its ownerReference with `controller: true`), or None.

    Ownership is decided by this uid, never by labels or names: anyone may put ktune's labels on an object, and a
    TuningJob deleted and created again under the same name leaves children with the same names and labels until
    the garbage collector removes them.
    """
    for reference in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller"):
            return str(reference.get("uid") or "") or None
    return None


def trial_pod_manifest(
    template: Mapping[str, Any],
    tuningjob: str,
    number: int,
    params: Mapping[str, Any],
    attempt: int,
    metrics_port: int,
    trial: Mapping[str, Any],
) -> dict[str, Any]:
    """The Pod for attempt `attempt` of trial `number`, made from the job's PodTemplateSpec `template`.

    Every container gets the contract's variables first (so the template's own env and its
    `$(KTUNE_PARAM_X)` references see them); the first container is the trainer: it gets the metrics
    port and is the one whose termination message holds the result. `trial` is the owning Trial object.
    Containers and init containers (native sidecars too) get the restricted security defaults where the template
    leaves them unset, and a writable /tmp when their root filesystem ends up read-only; the pod gets no
    ServiceAccount token unless the template sets `automountServiceAccountToken`.
    """
    template = copy.deepcopy(dict(template))
    metadata = template.get("metadata") or {}
    spec = template.get("spec") or {}
    env = _contract_env_vars(tuningjob, number, params, metrics_port)
    containers = spec.get("containers") or []
    for index, container in enumerate(containers):
        container["env"] = env + [var for var in container.get("env") or [] if var.get("name") not in _names(env)]
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
        if index == 0:
            _add_metrics_port(container, metrics_port)
    every_container = [*(spec.get("initContainers") or []), *containers]
    for container in every_container:
        container["securityContext"] = _container_security(container.get("securityContext"))
    _add_scratch_volume(spec, every_container)
    spec["restartPolicy"] = "Never"  # a retry is a new attempt (a new pod), counted by the operator
    spec["securityContext"] = _with_defaults(spec.get("securityContext"), POD_SECURITY_DEFAULTS)
    if spec.get("automountServiceAccountToken") is None:
        # A trainer does not talk to the API server; a template that wants the token (or says false) decides.
        spec["automountServiceAccountToken"] = False
    labels = {**(metadata.get("labels") or {}), **trial_labels(tuningjob, number)}
    annotations = {**(metadata.get("annotations") or {}), ATTEMPT_ANNOTATION: str(attempt)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": trial_pod_name(tuningjob, number, attempt),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(trial)],
        },
        "spec": spec,
    }


def pod_attempt(pod: Mapping[str, Any]) -> int:
    """Which attempt of its trial a pod runs (0 when the annotation is missing or garbled)."""
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(ATTEMPT_ANNOTATION, "0")
    return int(text) if text.isdigit() else 0


def _contract_env_vars(
    tuningjob: str, number: int, params: Mapping[str, Any], metrics_port: int
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": name, "value": value} for name, value in contract_env(tuningjob, number, params).items()
    ]
    env.append({"name": contract.ENV_METRICS_HOST, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    env.append({"name": contract.ENV_METRICS_PORT, "value": str(metrics_port)})
    return env


def _names(env: list[dict[str, Any]]) -> set[str]:
    return {var["name"] for var in env}


def _with_defaults(given: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`given` with each default added where `given` leaves that key unset (absent, or null as the server reads it)."""
    set_here = {key: value for key, value in (given or {}).items() if value is not None}
    return {**copy.deepcopy(dict(defaults)), **set_here}


def _container_security(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The container defaults under `given`; `capabilities` merge key by key, so an `add` keeps `drop: [ALL]`."""
    security = _with_defaults(given, CONTAINER_SECURITY_DEFAULTS)
    if isinstance(security["capabilities"], Mapping):
        security["capabilities"] = _with_defaults(security["capabilities"], CONTAINER_SECURITY_DEFAULTS["capabilities"])
    return security


def _add_metrics_port(container: dict[str, Any], metrics_port: int) -> None:
    ports = container.setdefault("ports", [])
    if not any(port.get("containerPort") == metrics_port for port in ports):
        ports.append({"name": METRICS_PORT_NAME, "containerPort": metrics_port, "protocol": "TCP"})


def _add_scratch_volume(spec: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    """A writable /tmp for containers whose root filesystem we made read-only (libraries write caches there)."""
    volumes = spec.setdefault("volumes", [])
    needy = [
        container
        for container in containers
        if container["securityContext"].get("readOnlyRootFilesystem")
        and not any(mount.get("mountPath") == "/tmp" for mount in container.get("volumeMounts") or [])
    ]
    if not needy:
        if not volumes:
            del spec["volumes"]
        return
    if not any(volume.get("name") == SCRATCH_VOLUME for volume in volumes):
        volumes.append({"name": SCRATCH_VOLUME, "emptyDir": {}})
    for container in needy:
        container.setdefault("volumeMounts", []).append({"name": SCRATCH_VOLUME, "mountPath": "/tmp"})
