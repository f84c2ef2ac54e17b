"""The CustomResourceDefinitions of TuningJob and Trial, generated from `ktune.spec`'s names and limits.

`scripts/generate` writes them into manifests/ and charts/ktune/crds/; a test fails when those files are
stale. Rules the API server can check cheaply are here too (enums, ranges, CEL cross-field rules), so
`kubectl apply` refuses most bad jobs at once; the rest (Optuna's option checks, whole-number steps) are
`ktune.spec`'s and reach the user as the TuningJob's `Invalid` condition.
"""

from typing import Any

import yaml

from ktune import contract
from ktune.spec import checker
from ktune.spec import model as spec
from ktune.spec.algorithm_rules import AlgorithmRules
from ktune.spec.openapi import (
    Schema,
    any_scalar,
    array,
    boolean,
    free_form,
    integer,
    metric_name,
    number,
    obj,
    pattern,
    string,
)
from ktune.spec.resource_kinds import SUPPORTED_KINDS
from ktune.spec.status_schema import trial_schema, tuningjob_status_schema
from ktune.spec.trial_schema import primary_pod_schema, trial_resource_schema

GROUP, VERSION = contract.API_GROUP, contract.API_VERSION
MAX_PARAMETERS = 64
MAX_METRICS = 64


def objective_schema(with_goal: bool) -> Schema:
    properties = {
        "metric": metric_name("Name of the metric the trainer reports (a key of its result JSON and of "
                              "ktune_trial_metric{metric=...})."),
        "direction": string("Whether larger (maximize) or smaller (minimize) values are better.",
                            enum=list(spec.DIRECTIONS), default=spec.DEFAULTS["objective.direction"]),
    }
    if with_goal:
        properties["goal"] = number("Stop the job (Succeeded, reason GoalReached) as soon as a trial reaches "
                                    "this value.")
    return obj("One objective: a metric and its direction.", properties, required=["metric"])


def parameter_schema() -> Schema:
    rules = [
        # CEL cannot see `choices` (its items have no single type): the operator checks the categorical rules.
        ("self.type == 'categorical' || (has(self.low) && has(self.high))",
         "a float or int parameter needs low and high"),
        ("self.type != 'categorical' || (!has(self.low) && !has(self.high) && !has(self.log) && !has(self.step))",
         "a categorical parameter takes only choices (no low, high, log or step)"),
        ("!has(self.low) || !has(self.high) || self.low < self.high", "low must be < high"),
        ("!has(self.log) || !self.log || !has(self.low) || self.low > 0.0", "low must be > 0 when log is true"),
        ("!has(self.log) || !self.log || !has(self.step)", "log and step cannot both be set"),
        ("self.type != 'int' || !has(self.low) || self.low == double(int(self.low))",
         "low must be an integer for an int parameter"),
        ("self.type != 'int' || !has(self.high) || self.high == double(int(self.high))",
         "high must be an integer for an int parameter"),
        ("!has(self.step) || !has(self.low) || !has(self.high) || self.step <= self.high - self.low",
         "step must be <= high - low"),
    ]
    return obj(
        "One searched hyperparameter. Its value reaches the trainer as KTUNE_PARAM_<NAME> "
        "(and in KTUNE_TRIAL_PARAMS); use $(KTUNE_PARAM_<NAME>) in the container's args.",
        {
            "name": string("Parameter name: lower-case letters, digits and '_'; it becomes KTUNE_PARAM_<NAME>.",
                           pattern=pattern(checker.PARAMETER_NAME.pattern), maxLength=spec.MAX_NAME_LENGTH),
            "type": string("float and int search the range low..high; categorical picks one of choices.",
                           enum=list(spec.PARAMETER_TYPES)),
            "low": number("Lowest value (float and int parameters; an integer for int)."),
            "high": number("Highest value (float and int parameters; an integer for int); must be > low."),
            "log": boolean("Sample on a log scale (needs low > 0; not with step). Default false."),
            "step": number("Only values low + k*step (high - low must be a whole number of steps). "
                           "Default 1 for int parameters, none for float.", exclusiveMinimum=True, minimum=0),
            "choices": array("The values a categorical parameter can take: strings, numbers or booleans, "
                             "no duplicates.",
                             any_scalar("One choice: a string, number or boolean."), minItems=1, maxItems=1000),
        },
        required=["name", "type"],
        **{"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]},
    )


def tuningjob_spec_schema(rules: AlgorithmRules) -> Schema:
    budget_defaults = spec.DEFAULTS["budget"]
    trial_defaults = spec.DEFAULTS["trial"]
    cel_rules = [
        ("has(self.objective) != has(self.objectives)",
         "set exactly one of objective (single) or objectives (multi-objective)"),
        ("!has(self.objectives) || self.pruner.name == 'none' || has(self.pruner.metric)",
         "a multi-objective job prunes on one metric: set pruner.metric to one of the objectives, or use "
         "pruner none"),
        ("!has(self.pruner.metric) || (has(self.objective) ? self.pruner.metric == self.objective.metric "
         ": self.objectives.exists(o, o.metric == self.pruner.metric))",
         "pruner.metric must name one of the objectives' metrics"),
        ("self.sampler.name != 'grid' || self.parameters.all(p, p.type != 'float' || has(p.step))",
         "grid sampler needs a step on every float parameter"),
        ("!has(self.objectives) || !(self.sampler.name in " + repr(list(rules.single_objective_samplers)) + ")",
         "this sampler optimises a single objective; use tpe, nsga2, random, qmc or gp for objectives"),
    ]
    return obj(
        "What to tune, how to search, and how to run one trial.",
        {
            "objective": objective_schema(with_goal=True),
            "objectives": array(
                "Several objectives (multi-objective search; at least two, no goal). Instead of objective.",
                objective_schema(with_goal=False), minItems=2, maxItems=8,
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["metric"]},
            ),
            "metrics": array("Extra metrics recorded for every trial (besides the objectives).",
                             metric_name("A metric name."), maxItems=MAX_METRICS,
                             **{"x-kubernetes-list-type": "set"}),
            "parameters": array("The search space: one entry per hyperparameter, names unique.",
                                parameter_schema(), minItems=1, maxItems=MAX_PARAMETERS,
                                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
            "sampler": obj(
                "How the next trial's parameters are chosen (an Optuna sampler).",
                {
                    "name": string("The Optuna sampler.", enum=list(rules.sampler_names),
                                   default=spec.DEFAULTS["sampler"]["name"]),
                    "seed": integer("Random seed: the same seed and trials give the same next parameters, also "
                                    "after an operator restart.", minimum=0, maximum=spec.MAX_SEED),
                    "options": free_form("Keyword arguments of the Optuna sampler (e.g. n_startup_trials for "
                                         "tpe); checked against Optuna by the operator."),
                },
                default={"name": spec.DEFAULTS["sampler"]["name"]},
            ),
            "pruner": obj(
                "How running trials are stopped early from their intermediate values (an Optuna pruner).",
                {
                    "name": string("The Optuna pruner; none never prunes.", enum=list(rules.pruner_names),
                                   default=spec.DEFAULTS["pruner"]["name"]),
                    "options": free_form("Keyword arguments of the Optuna pruner (e.g. n_warmup_steps for "
                                         "median)."),
                    "metric": metric_name("The metric the pruner judges; one of the objectives. Required with "
                                          "objectives, defaults to the single objective's metric."),
                },
                default={"name": spec.DEFAULTS["pruner"]["name"]},
            ),
            "budget": obj(
                "How many trials, how many at once, and when to give up.",
                {
                    "maxTrials": integer("Trials in total; the job succeeds when they have all finished.",
                                         minimum=1, maximum=spec.MAX_TRIALS_LIMIT,
                                         default=budget_defaults["maxTrials"]),
                    "parallelism": integer("Trials (pods) running at the same time; at most maxTrials. Can be "
                                           "changed while the job runs.", minimum=1,
                                           maximum=spec.MAX_TRIALS_LIMIT, default=budget_defaults["parallelism"]),
                    "maxFailedTrials": integer("The job fails (reason TooManyFailedTrials) once this many trials "
                                               "failed. Unset: no limit.", minimum=1),
                    "activeDeadlineSeconds": integer("The job fails (reason DeadlineExceeded) this many seconds "
                                                     "after it started. Unset: no deadline.", minimum=1),
                    "maxGpuHours": number("GPU-hours the job may use: each trial's requested nvidia.com/gpu "
                                          "times its running time (pruned and failed trials count). No trial "
                                          "starts that would likely exceed it; the job ends with reason "
                                          "BudgetExhausted. Unset: no limit.", exclusiveMinimum=True, minimum=0),
                    "maxCpuHours": number("CPU-hours the job may use, accounted like maxGpuHours from the "
                                          "requested cpu (1 when unset). Unset: no limit.",
                                          exclusiveMinimum=True, minimum=0),
                },
                default={key: value for key, value in budget_defaults.items() if value is not None},
                **{"x-kubernetes-validations": [
                    {"rule": "self.parallelism <= self.maxTrials", "message": "parallelism must be <= maxTrials"},
                ]},
            ),
            "trial": obj(
                "How one trial runs: a pod made from template, or a resource of several pods (a Job, a Kubeflow job), "
                "with the trainer contract's variables injected into every container.",
                {
                    "retries": integer("How often a failed attempt is replaced by a new one (a new pod, or the "
                                       "whole resource again) before the trial counts as Failed.", minimum=0,
                                       maximum=spec.MAX_RETRIES, default=trial_defaults["retries"]),
                    "metricsPort": integer("Port of the trainer's Prometheus /metrics (KTUNE_METRICS_PORT).",
                                           minimum=1, maximum=65535, default=trial_defaults["metricsPort"]),
                    "template": free_form("A PodTemplateSpec as in a Job: the trial's pod. Its first container "
                                          "is the trainer; its termination message carries the final "
                                          "metrics. restartPolicy is always Never: retries are new pods."),
                    "resource": trial_resource_schema(),
                    "primaryPod": primary_pod_schema(),
                    "queueName": string("Kueue's LocalQueue (in the job's namespace) the trial resources wait in: "
                                        "each is created suspended with the kueue.x-k8s.io/queue-name label, "
                                        "and the trial is Pending (reason QueueAdmission, not timed out, no "
                                        "hours counted) until Kueue admits it. Only with resource.",
                                        maxLength=spec.MAX_NAME_LENGTH, pattern=pattern(checker.DNS_LABEL.pattern)),
                },
                **{"x-kubernetes-validations": [
                    {"rule": "has(self.template) != has(self.resource)",
                     "message": "set exactly one of template (a PodTemplateSpec: one pod per trial) or resource "
                                f"(a trial of several pods, one of: {SUPPORTED_KINDS})"},
                    {"rule": "!has(self.primaryPod) || has(self.resource)",
                     "message": "primaryPod needs resource: a template trial is one pod, its own metrics pod"},
                    {"rule": "!has(self.queueName) || has(self.resource)",
                     "message": "queueName needs resource: Kueue queues Jobs, not bare pods; use a batch/v1 Job "
                                "with parallelism 1 as spec.trial.resource"},
                ]},
            ),
            "warmStart": obj(
                "Start from earlier results: finished trials of earlier jobs seed the search, and given "
                "configurations run first.",
                {
                    "from": array(
                        "Earlier TuningJobs whose succeeded trials (read from their Trial objects) seed the study; "
                        "only jobs with the same parameter names and types; trials outside this job's space are "
                        "dropped and counted in status.importedTrialsDropped.",
                        obj("An earlier TuningJob.", {
                            "name": string("Its metadata.name.", maxLength=spec.MAX_NAME_LENGTH),
                            "namespace": string("Its namespace; default: this job's namespace.",
                                                maxLength=spec.MAX_NAME_LENGTH),
                        }, required=["name"]),
                        maxItems=MAX_PARAMETERS,
                    ),
                    "enqueue": array(
                        "Configurations the first trials run, in order: parameter name to value (parameters "
                        "left out are sampled).", free_form("One configuration."),
                        maxItems=spec.MAX_TRIALS_LIMIT,
                    ),
                },
            ),
            "suspend": boolean("Pause the job: running trials finish, no new trial starts, the phase is "
                               "Suspended; false resumes it. Changing it never restarts the search.",
                               default=spec.DEFAULTS["suspend"]),
            "metricsSource": obj(
                "Where intermediate metrics are read while trials run.",
                {
                    "type": string("direct: scrape each trial pod's /metrics; prometheus: query the server at "
                                   "url; logs: parse the trial container's log (Katib name=value or JSON lines).",
                                   enum=list(spec.METRICS_SOURCE_TYPES),
                                   default=spec.DEFAULTS["metricsSource"]["type"]),
                    "url": string("Base URL of the Prometheus server (type prometheus only), e.g. "
                                  "http://prometheus:9090.", pattern="^https?://.+", maxLength=2048),
                    "format": string("type logs: katib (name=value pairs) or json (one object per line); unset "
                                     "tries both on each line.", enum=list(spec.LOG_FORMATS)),
                    "filter": string("type logs, Katib format: a regular expression whose first group is a "
                                     "metric's name and second its value; default Katib's "
                                     f"{spec.KATIB_DEFAULT_FILTER}", maxLength=spec.MAX_FILTER_LENGTH),
                    "stepMetric": string("type logs: the name (or JSON key) of the step the values on a line "
                                         f"belong to, e.g. epoch (default {spec.DEFAULT_STEP_METRIC}).",
                                         pattern=r"^[\w.|-]{1,63}$"),
                },
                default={"type": spec.DEFAULTS["metricsSource"]["type"]},
                **{"x-kubernetes-validations": [
                    {"rule": "self.type == 'prometheus' ? has(self.url) : !has(self.url)",
                     "message": "url is required for type prometheus and only allowed there"},
                    {"rule": "self.type == 'logs' || !(has(self.format) || has(self.filter) || has(self.stepMetric))",
                     "message": "format, filter and stepMetric are only for type logs"},
                ]},
            ),
        },
        required=["parameters", "trial"],
        **{"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in cel_rules]},
    )


def tuningjob_schema(rules: AlgorithmRules) -> Schema:
    return obj(
        "A hyperparameter search: the operator runs one pod per trial and writes the best parameters to status.",
        {
            "apiVersion": string("The API version of this object (ktune.dev/v1alpha1)."),
            "kind": string("TuningJob."),
            "spec": tuningjob_spec_schema(rules),
            "status": tuningjob_status_schema(),
        },
        required=["spec"],
        **{"x-kubernetes-validations": [{
            "rule": "self.metadata.name.size() <= 63 && self.metadata.name.matches('"
                    + pattern(checker.DNS_LABEL.pattern) + "')",
            "message": "metadata.name must be a DNS label (at most 63 lower-case letters, digits and '-'): it "
                       "becomes a label value on every trial pod",
        }]},
    )


def crd(kind: str, plural: str, short_name: str, schema: Schema, columns: list[Schema]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "ktune"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": [short_name], "categories": ["ktune"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def column(name: str, type_: str, path: str, description: str, **extra: Any) -> Schema:
    return {"name": name, "type": type_, "jsonPath": path, "description": description, **extra}


def tuningjob_crd(rules: AlgorithmRules) -> dict[str, Any]:
    return crd(contract.TUNINGJOB_KIND, contract.TUNINGJOB_PLURAL, "tj", tuningjob_schema(rules), [
        column("Phase", "string", ".status.phase", "Pending, Running, Succeeded or Failed."),
        column("Objective", "string", ".status.objective", "The objective metric and direction, e.g. max accuracy."),
        column("Best", "number", ".status.bestTrial.value", "The best objective value so far."),
        column("Trials", "string", ".status.trials", "Finished trials / maxTrials."),
        column("Running", "integer", ".status.trialCounts.running", "Trials running now."),
        column("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        column("Best-Params", "string", ".status.bestTrial.params", "The best trial's parameters.", priority=1),
    ])


def trial_crd() -> dict[str, Any]:
    return crd(contract.TRIAL_KIND, contract.TRIAL_PLURAL, "tr", trial_schema(), [
        column("Job", "string", ".spec.tuningJob", "The TuningJob."),
        column("State", "string", ".status.state", "Pending (waiting in its Kueue queue), Running, Succeeded, "
                                                   "Pruned or Failed."),
        column("Kind", "string", ".status.kind", "What each attempt runs: Pod, or the trial resource's kind."),
        column("Pods", "integer", ".status.pods", "Pods each attempt runs at once."),
        column("Value", "number", ".status.value", "The objective's final value."),
        column("Params", "string", ".status.paramsSummary", "The parameter values."),
        column("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        column("Reason", "string", ".status.reason", "Why it waits (QueueAdmission), was pruned or failed.",
               priority=1),
        column("Pod", "string", ".status.podName", "The latest attempt's pod.", priority=1),
        column("Resource", "string", ".status.resourceName", "The latest attempt's resource.", priority=1),
    ])


HEADER = "# Generated by `scripts/generate` from ktune.spec; do not edit.\n"


def render(rules: AlgorithmRules) -> str:
    """Both CRDs as one YAML stream, exactly as committed in manifests/crds.yaml."""
    documents = [tuningjob_crd(rules), trial_crd()]
    return HEADER + yaml.safe_dump_all(documents, sort_keys=False, width=120, explicit_start=True)
