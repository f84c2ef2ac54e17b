"""Checks of a pod template a trial runs: `spec.trial.template`, a Job's `spec.template`, each replica template of a
Kubeflow job. Every one is checked the same way, so whatever reads a trial's pods later (the contract env, the
admin's policy, the local runner) can rely on the same shape whichever the trial's kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ktune.spec.checker import DNS_LABEL, Checker, show


def check_containers(check: Checker, template: Mapping[str, Any], path: str = "spec.trial.template",
                     required: str | None = None) -> bool:
    """The pod template at `path` has containers ktune can run: named, with a command or an image, one of them
    named `required` when given (the container a Kubeflow training-operator runs as the trainer)."""
    pod_spec = check.mapping(template.get("spec"), f"{path}.spec")
    if pod_spec is None:
        return False
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        check.problem(f"{path}.spec.containers", f"must be a non-empty list (got {show(containers)})")
        return False
    ok, names = True, set()
    for i, raw in enumerate(containers):
        where = f"{path}.spec.containers[{i}]"
        container = check.mapping(raw, where)
        if container is None:
            ok = False
            continue
        name = container.get("name")
        if name is None:
            check.problem(where, "name is required")
            ok = False
        elif check.name(name, f"{where}.name", DNS_LABEL, "must be a DNS label: [a-z0-9] and '-'"):
            if name in names:
                check.problem(f"{where}.name", f"duplicate container name (got {show(name)})")
                ok = False
            names.add(name)
        else:
            ok = False
        if "command" not in container and "image" not in container:
            check.problem(where, "needs a command (to run locally) or an image (to run on Kubernetes)")
            ok = False
        command = container.get("command")
        if command is not None and (not isinstance(command, list) or not command
                                    or not all(isinstance(part, str) for part in command)):
            check.problem(f"{where}.command", f"must be a non-empty list of strings (got {show(command)})")
            ok = False
        args = container.get("args")
        if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
            check.problem(f"{where}.args", f"must be a list of strings (got {show(args)}); quote numbers in YAML")
            ok = False
    if ok and required is not None and required not in names:
        check.problem(f"{path}.spec.containers", f"needs a container named {required!r}: the training-operator "
                                                 "requires one in every replica (its exit code is the replica's) "
                                                 f"(got {', '.join(sorted(names))})")
        ok = False
    return ok
