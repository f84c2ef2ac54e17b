"""Checks of `spec.trial`: one pod (`template`, a PodTemplateSpec) or a resource of several pods (`resource`: a
`batch/v1` Job, Indexed for multi-node training, or a Kubeflow PyTorchJob, TFJob, MPIJob or XGBoostJob), which
of its pods is the metrics source (`primaryPod`), and the hour budgets that read its requests.

A resource's kind must be one ktune knows how to run (`ktune.spec.resource_kinds` lists them); its pod templates
are checked like `template` (`ktune.spec.resource_checks`), so every later reader of a trial's pods (the
contract env, the admin's policy, the local runner) reads them the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ktune.spec.checker import DNS_LABEL, Checker
from ktune.spec.model import DEFAULTS, MAX_RETRIES, TrialResource, TrialSpec
from ktune.spec.pod_template import check_containers
from ktune.spec.resource_checks import check_resource
from ktune.spec.resource_kinds import (
    SUPPORTED_KINDS,
    PodTemplate,
    default_primary_pod,
    pod_templates,
    primary_template,
)
from ktune.spec.resources import GPU_RESOURCE, TrialResources, template_resources
from ktune.spec.selector import check_selector

_TRIAL_FIELDS = ("retries", "metricsPort", "template", "resource", "primaryPod", "queueName")


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
    primary = _check_primary_pod(check, trial)
    if kept is None or not ok or primary is None or any(key not in _TRIAL_FIELDS for key in trial):
        return None
    queue = {"queueName": trial["queueName"]} if "queueName" in trial else {}
    return {"retries": filled["retries"], "metricsPort": filled["metricsPort"], **kept, **primary, **queue}


def _check_primary_pod(check: Checker, trial: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{"primaryPod": selector}`, `{}` when not given, None when wrong: a LabelSelector, only for a resource."""
    if "primaryPod" not in trial:
        return {}
    if "resource" not in trial:
        check.problem("spec.trial.primaryPod", "needs spec.trial.resource: a template trial is one pod, which is "
                                               "its metrics pod; remove primaryPod, or make the trial a resource "
                                               f"({SUPPORTED_KINDS})")
        return None
    selector = check_selector(check, trial["primaryPod"])
    return None if selector is None else {"primaryPod": selector}


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


def trial_spec(trial: Mapping[str, Any]) -> TrialSpec:
    """The typed `spec.trial` of a checked and filled one."""
    raw = trial.get("resource")
    if raw is None:
        return TrialSpec(trial["retries"], trial["metricsPort"], trial["template"])
    pods = sum(template.replicas for template in pod_templates(raw))
    primary = trial.get("primaryPod") or default_primary_pod(raw)
    resource = TrialResource(raw["apiVersion"], raw["kind"], raw, pods,
                             indexed=raw["spec"].get("completionMode") == "Indexed", primary_pod=primary,
                             queue_name=trial.get("queueName"))
    return TrialSpec(trial["retries"], trial["metricsPort"], primary_template(raw), resource)


def trial_pod_templates(trial: TrialSpec) -> list[PodTemplate]:
    """Every pod template of one attempt, its path from the TuningJob's root, and how many pods run it."""
    if trial.resource is None:
        return [PodTemplate("spec.trial.template", trial.template, 1)]
    return [PodTemplate(f"spec.trial.resource.{path}", template, replicas)
            for path, template, replicas in pod_templates(trial.resource.manifest)]


def trial_resources(trial: TrialSpec) -> TrialResources:
    """What one attempt of the trial requests: every pod of it, each replica with its own template's requests
    (a Kubeflow job's Master and Workers may request different GPUs). ValueError for a quantity that does not
    parse."""
    requested = [template_resources(template, replicas) for _, template, replicas in trial_pod_templates(trial)]
    return TrialResources(gpus=sum(r.gpus for r in requested), cpus=sum(r.cpus for r in requested))


def check_hour_budgets(check: Checker, budget: dict[str, Any], trial: dict[str, Any]) -> None:
    """An hour budget needs requests it can read: quantities that parse, and GPUs for maxGpuHours."""
    if budget["maxGpuHours"] is None and budget["maxCpuHours"] is None:
        return
    typed = trial_spec(trial)
    templates = trial_pod_templates(typed)
    gpus = 0.0
    for path, template, replicas in templates:
        try:
            gpus += template_resources(template, replicas).gpus
        except ValueError as error:
            check.problem(f"{path}.spec.containers", f"resources: {error} (needed to account spec.budget's hours)")
            return
    if budget["maxGpuHours"] is not None and gpus == 0:
        where = "" if typed.resource is None else f" ({', '.join(template.path for template in templates)})"
        check.problem("spec.budget.maxGpuHours", f"the trial template requests no {GPU_RESOURCE}{where}: "
                                                 f"set resources.limits.{GPU_RESOURCE} on its containers, or use "
                                                 "maxCpuHours")
