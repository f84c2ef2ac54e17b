"""The CRD schema of `spec.trial.resource` and `spec.trial.primaryPod`, from `ktune.spec.resource_kinds`' table.

The API server refuses what it can check cheaply: a kind ktune does not run (with the supported list), a Job
without its pod template, a Kubeflow job without its replica specs, a replica type the kind does not have,
replicas below 1, a replica without a template, a malformed selector. The rest (containers, the training-operator's
container name, one Master) is `ktune.spec.resource_checks`', and reaches the user as the `Invalid` condition.
"""

from ktune.spec.model import JOB_COMPLETION_MODES
from ktune.spec.openapi import Schema, array, free_form, integer, obj, string
from ktune.spec.resource_checks import REPLICA_RESTART_POLICIES
from ktune.spec.resource_kinds import KINDS as KIND_TABLE
from ktune.spec.resource_kinds import SUPPORTED_KINDS, ResourceKind
from ktune.spec.selector import OPERATORS

MAX_REPLICA_TYPES = 8
MAX_SELECTOR_TERMS = 16
KINDS = tuple(KIND_TABLE.values())


def _is(kind: ResourceKind) -> str:
    return f"(self.apiVersion == '{kind.api_version}' && self.kind == '{kind.kind}')"


def replica_specs_schema(kind: ResourceKind) -> Schema:
    """A Kubeflow job's replica specs: replica type -> {replicas, restartPolicy, template}."""
    types = ", ".join(kind.replica_types)
    lowered = ", ".join(f"'{name.lower()}'" for name in kind.replica_types)
    replica = obj(
        f"One replica type's pods: how many, and their pod template (the contract's variables go into every "
        f"container). The training-operator requires a container named {kind.container!r} in it."
        if kind.container else "One replica type's pods: how many, and their pod template.",
        {
            "replicas": integer("Pods of this replica type (default 1); hours count every one.", minimum=1),
            "restartPolicy": string("Default Never: ktune's retries re-create the whole job instead.",
                                    enum=list(REPLICA_RESTART_POLICIES)),
            "template": free_form("The replica's pod template (a PodTemplateSpec)."),
        },
        required=["template"],
    )
    return {
        "type": "object",
        "description": f"The {kind.kind}'s replica specs, by replica type ({types}; matched without case).",
        "additionalProperties": replica,
        "minProperties": 1,
        "maxProperties": MAX_REPLICA_TYPES,
        "x-kubernetes-validations": [
            {"rule": f"self.all(t, t.lowerAscii() in [{lowered}])",
             "message": f"replica types of a {kind.kind} are {types}"},
        ],
    }


def _kind_rules() -> list[dict[str, str]]:
    rules = [{"rule": " || ".join(_is(kind) for kind in KINDS),
              "message": f"unsupported kind: a trial resource is one of: {SUPPORTED_KINDS}"}]
    for kind in KINDS:
        if kind.replica_key is None:
            rules.append({"rule": f"!{_is(kind)} || has(self.spec.template)",
                          "message": "is required: the Job's pod template", "fieldPath": ".spec.template",
                          "reason": "FieldValueRequired"})
        else:
            rules.append({"rule": f"!{_is(kind)} || has(self.spec.{kind.replica_key})",
                          "message": f"is required: a {kind.kind}'s replica specs "
                                     f"({', '.join(kind.replica_types)})",
                          "fieldPath": f".spec.{kind.replica_key}", "reason": "FieldValueRequired"})
    return rules


def trial_resource_schema() -> Schema:
    """`spec.trial.resource`: only the kinds ktune runs; a Job's spec needs a pod template, a Kubeflow job's its
    replica specs."""
    job_spec = obj(
        "The resource's spec. A Job: ktune sets backoffLimit 0 unless given (retries re-create the whole Job) and "
        "the pod template's restartPolicy Never. A Kubeflow job: its replica specs under the kind's key.",
        {
            "parallelism": integer("A Job's pods that run at once: each requests the template's resources (hours "
                                   "count every one).", minimum=1),
            "completions": integer("A Job's pods that must succeed (Indexed: one per index 0..completions-1).",
                                   minimum=1),
            "completionMode": string("A Job's: Indexed gives each pod JOB_COMPLETION_INDEX, index 0 is the metrics "
                                     "pod.", enum=list(JOB_COMPLETION_MODES)),
            "backoffLimit": integer("Failed pods a Job itself retries before it fails (default 0).", minimum=0),
            "template": free_form("A Job's pod template, of every pod of the Job: its first container is the "
                                  "trainer."),
            **{kind.replica_key: replica_specs_schema(kind) for kind in KINDS if kind.replica_key is not None},
        },
        **{"x-kubernetes-preserve-unknown-fields": True, "x-kubernetes-validations": [
            {"rule": "!has(self.completionMode) || self.completionMode != 'Indexed' || has(self.completions)",
             "message": "completions is required with completionMode Indexed"},
        ]},
    )
    return obj(
        f"A trial of several pods instead of template's one: a resource of one of these kinds: {SUPPORTED_KINDS}. "
        "Every container of every pod gets the contract's variables; the metrics pod is primaryPod's.",
        {
            "apiVersion": string(f"One of the supported kinds' apiVersion ({SUPPORTED_KINDS})."),
            "kind": string(f"One of the supported kinds ({SUPPORTED_KINDS})."),
            "metadata": free_form("Labels and annotations for the resource."),
            "spec": job_spec,
        },
        required=["apiVersion", "kind", "spec"],
        **{"x-kubernetes-validations": _kind_rules()},
    )


def primary_pod_schema() -> Schema:
    """`spec.trial.primaryPod`: a LabelSelector with at least one term."""
    expression = obj(
        "A label requirement.",
        {
            "key": string("The label key.", maxLength=316),
            "operator": string("How the key's value is tested.", enum=list(OPERATORS)),
            "values": array("The values for In and NotIn; empty for Exists and DoesNotExist.",
                            string("A label value.", maxLength=63), maxItems=MAX_SELECTOR_TERMS),
        },
        required=["key", "operator"],
        **{"x-kubernetes-validations": [
            {"rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
             "message": "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"},
        ]},
    )
    return obj(
        "Which pod of the resource is the metrics source and writes the result (a label selector; only with "
        "resource). Default per kind: an Indexed Job's index 0, a NonIndexed Job's first pod, a PyTorchJob's "
        "Master, a TFJob's Chief (else Master, else Worker 0), an MPIJob's Launcher, an XGBoostJob's Master. "
        "A selector that matches no pod fails the attempt (MetricsUnavailable) after the unschedulable timeout.",
        {
            "matchLabels": {"type": "object", "description": "Labels the pod must have.",
                            "additionalProperties": string("A label value.", maxLength=63),
                            "maxProperties": MAX_SELECTOR_TERMS},
            "matchExpressions": array("Label requirements the pod must meet.", expression,
                                      maxItems=MAX_SELECTOR_TERMS),
        },
        **{"x-kubernetes-validations": [
            {"rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
                     "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
             "message": "needs matchLabels or matchExpressions: an empty selector selects every pod"},
        ]},
    )
