"""Checks of `spec.trial`: one pod (`template`, a PodTemplateSpec) or a resource of several pods (`resource`,
a `batch/v1` Job; Indexed for multi-node training), and the hour budgets that read its requests.

A resource's kind must be one ktune knows how to run: how it succeeds and fails, which pod is the metrics
source and how it is stopped are per kind (`ktune.spec.model.RESOURCE_KINDS` lists them). Its pod template is
checked like `template`, so every later reader of a trial's pod (the contract env, the admin's policy, the
local runner) reads it the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ktune.spec.checker import DNS_LABEL, Checker, show
from ktune.spec.model import DEFAULTS, JOB_COMPLETION_MODES, MAX_RETRIES, RESOURCE_KINDS, TrialResource, TrialSpec
from ktune.spec.resources import GPU_RESOURCE, template_resources

_TRIAL_FIELDS = ("retries", "metricsPort", "template", "resource", "queueName")
_RESOURCE_FIELDS = ("apiVersion", "kind", "metadata", "spec")
SUPPORTED_KINDS = ", ".join(f"{api_version} {kind}" for api_version, kind in RESOURCE_KINDS)
JOB_BACKOFF_LIMIT = 0
"""A trial Job fails at its first failed pod: ktune's `retries` re-create the whole Job (every pod of a
distributed run restarts together), so the Job's own pod retries default to none."""


def check_containers(check: Checker, template: Mapping[str, Any], path: str = "spec.trial.template") -> bool:
    """The pod template at `path` has containers ktune can run: named, with a command or an image."""
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
    return ok


def check_trial(check: Checker, raw: Any) -> dict[str, Any] | None:
    """`spec.trial` with its defaults filled: retries, metricsPort, and exactly one of template or resource."""
    trial = check.mapping(raw, "spec.trial")
    if trial is None:
        return None
    check.known_fields(trial, "spec.trial", _TRIAL_FIELDS)
    filled = copy.deepcopy(DEFAULTS["trial"]) | dict(trial)
    ok = check.integer(filled["retries"], "spec.trial.retries", 0, MAX_RETRIES)
    ok &= check.integer(filled["metricsPort"], "spec.trial.metricsPort", 1, 65535)
    if "template" in trial and "resource" in trial:
        check.problem("spec.trial", "set only one of template (a PodTemplateSpec: one pod per trial) or resource "
                                    f"(a trial of several pods: {SUPPORTED_KINDS}), not both")
        return None
    if "template" not in trial and "resource" not in trial:
        check.problem("spec.trial", "template is required (a PodTemplateSpec with at least one container), or "
                                    f"resource for a trial of several pods ({SUPPORTED_KINDS})")
        return None
    if "resource" in trial:
        resource = check_resource(check, trial["resource"])
        kept: dict[str, Any] | None = None if resource is None else {"resource": resource}
    else:
        template = check.mapping(trial["template"], "spec.trial.template")
        kept = None if template is None or not check_containers(check, template) else {
            "template": copy.deepcopy(dict(template))}
    ok &= _check_queue_name(check, trial)
    if kept is None or not ok or any(key not in _TRIAL_FIELDS for key in trial):
        return None
    queue = {"queueName": trial["queueName"]} if "queueName" in trial else {}
    return {"retries": filled["retries"], "metricsPort": filled["metricsPort"], **kept, **queue}


def _check_queue_name(check: Checker, trial: Mapping[str, Any]) -> bool:
    """`spec.trial.queueName`, Kueue's LocalQueue: a DNS label, and only for a resource (Kueue queues Jobs and
    training jobs, which ktune creates suspended; a bare trial pod has no suspend switch)."""
    if "queueName" not in trial:
        return True
    if not check.name(trial["queueName"], "spec.trial.queueName", DNS_LABEL,
                      "must be a DNS label (a LocalQueue's name: [a-z0-9] and '-')"):
        return False
    if "resource" not in trial:
        check.problem("spec.trial.queueName", "needs spec.trial.resource: Kueue queues Jobs, not bare pods; use "
                                              "a batch/v1 Job with parallelism 1 as spec.trial.resource (its pod "
                                              "template is today's spec.trial.template)")
        return False
    return True


def check_resource(check: Checker, raw: Any) -> dict[str, Any] | None:
    """`spec.trial.resource`, a supported kind (only `batch/v1` Job so far), with its defaults filled."""
    path = "spec.trial.resource"
    resource = check.mapping(raw, path)
    if resource is None:
        return None
    check.known_fields(resource, path, _RESOURCE_FIELDS)
    pair = (resource.get("apiVersion"), resource.get("kind"))
    if pair not in RESOURCE_KINDS:
        check.problem(f"{path}.kind", f"unsupported kind {show(pair[0])} {show(pair[1])}: a trial resource is one "
                                      f"of: {SUPPORTED_KINDS} (one pod per trial: use spec.trial.template)")
        return None
    if "metadata" in resource and check.mapping(resource["metadata"], f"{path}.metadata") is None:
        return None
    spec = check.mapping(resource.get("spec"), f"{path}.spec")
    if spec is None:
        return None
    job_spec = _check_job_spec(check, spec)
    if job_spec is None or any(key not in _RESOURCE_FIELDS for key in resource):
        return None
    return {**copy.deepcopy(dict(resource)), "spec": job_spec}


def _check_job_spec(check: Checker, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    path = "spec.trial.resource.spec"
    ok = True
    for key in ("parallelism", "completions"):
        if key in spec and not check.integer(spec[key], f"{path}.{key}", 1):
            ok = False
    mode = spec.get("completionMode", "NonIndexed")
    if not check.enum(mode, f"{path}.completionMode", JOB_COMPLETION_MODES):
        ok = False
    elif mode == "Indexed" and "completions" not in spec:
        check.problem(f"{path}.completions", "is required with completionMode Indexed (one pod per index, e.g. "
                                             "completions and parallelism both the number of nodes)")
        ok = False
    if "backoffLimit" in spec and not check.integer(spec["backoffLimit"], f"{path}.backoffLimit", 0):
        ok = False
    if "template" not in spec:
        check.problem(f"{path}.template", "is required: the Job's pod template (a PodTemplateSpec with at least "
                                          "one container)")
        return None
    template = check.mapping(spec["template"], f"{path}.template")
    if template is None or not check_containers(check, template, f"{path}.template") or not ok:
        return None
    return {"parallelism": 1, "backoffLimit": JOB_BACKOFF_LIMIT, **copy.deepcopy(dict(spec))}


def trial_spec(trial: Mapping[str, Any]) -> TrialSpec:
    """The typed `spec.trial` of a checked and filled one."""
    raw = trial.get("resource")
    if raw is None:
        return TrialSpec(trial["retries"], trial["metricsPort"], trial["template"])
    job_spec = raw["spec"]
    pods = min(job_spec["parallelism"], job_spec.get("completions") or job_spec["parallelism"])
    resource = TrialResource(raw["apiVersion"], raw["kind"], raw, pods,
                             indexed=job_spec.get("completionMode") == "Indexed",
                             queue_name=trial.get("queueName"))
    return TrialSpec(trial["retries"], trial["metricsPort"], job_spec["template"], resource)


def check_hour_budgets(check: Checker, budget: dict[str, Any], trial: dict[str, Any]) -> None:
    """An hour budget needs requests it can read: quantities that parse, and GPUs for maxGpuHours."""
    if budget["maxGpuHours"] is None and budget["maxCpuHours"] is None:
        return
    typed = trial_spec(trial)
    path = "spec.trial.template" if typed.resource is None else "spec.trial.resource.spec.template"
    try:
        resources = template_resources(typed.template)
    except ValueError as error:
        check.problem(f"{path}.spec.containers", f"resources: {error} (needed to account spec.budget's hours)")
        return
    if budget["maxGpuHours"] is not None and resources.gpus == 0:
        where = "" if typed.resource is None else f" ({path})"
        check.problem("spec.budget.maxGpuHours", f"the trial template requests no {GPU_RESOURCE}{where}: "
                                                 f"set resources.limits.{GPU_RESOURCE} on its containers, or use "
                                                 "maxCpuHours")
