"""Who may do what, written once: the operator's RBAC rules and the admission policy on TuningJob authors.

`scripts/generate` writes these into manifests/ and charts/ktune/ (`ktune.operator.manifest_files`). The
operator's rules are proven enough, and each one needed, on a real API server by tests/operator and
tests/security; the policy's effect by tests/security/test_admission_policy_on_cluster.py.
"""

from dataclasses import dataclass
from typing import Any

from ktune.operator.resource_adapters import ADAPTERS

_KUBEFLOW = tuple(sorted(adapter.api.plural for adapter in ADAPTERS.values() if adapter.api.group == "kubeflow.org"))


@dataclass(frozen=True)
class Rule:
    """One RBAC PolicyRule, with why the operator needs it where that is not plain (a comment in the files)."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str = ""

    def policy_rule(self) -> dict[str, list[str]]:
        """The rule as it appears in a (Cluster)Role's `rules`."""
        return {"apiGroups": list(self.api_groups), "resources": list(self.resources), "verbs": list(self.verbs)}


OPERATOR_RULES: tuple[Rule, ...] = (
    Rule(("ktune.dev",), ("tuningjobs",), ("get", "list", "watch", "patch"),
         why="Watch jobs; patch them for kopf's finalizer."),
    Rule(("ktune.dev",), ("tuningjobs/status", "trials/status"), ("patch",)),
    Rule(("ktune.dev",), ("trials",), ("list", "watch", "create"),
         why="Watch Trials: an edit or deletion of one wakes its job's reconcile pass at once."),
    Rule(("ktune.dev",), ("tuningjobs/finalizers", "trials/finalizers"), ("update",),
         why="ownerReferences with blockOwnerDeletion need this where OwnerReferencesPermissionEnforcement is on."),
    Rule(("",), ("pods",), ("list", "watch", "create", "delete")),
    Rule(("",), ("pods/log",), ("get",),
         why="metricsSource type logs: read the trial container's log for its metrics (no sidecar)."),
    Rule(("",), ("events",), ("create",)),
    Rule(("batch",), ("jobs",), ("list", "watch", "create", "delete"),
         why="spec.trial.resource: each attempt of a Job trial is a batch/v1 Job; its pods' changes wake the job."),
    Rule(("",), ("services",), ("list", "create"),
         why="An Indexed Job trial of several pods: a headless Service per attempt, owned by its Job (the garbage "
             "collector deletes it), names rank 0 for the other ranks."),
    Rule(("kubeflow.org",), _KUBEFLOW, ("list", "watch", "create", "delete"),
         why="spec.trial.resource: each attempt of a Kubeflow trial is a PyTorchJob, TFJob, MPIJob or XGBoostJob; "
             "their verdicts wake the job. Harmless where the training-operator is not installed."),
)
"""What the operator may do in the namespaces it watches: a ClusterRole when it watches all of them.
Nothing else: no Secrets, no ConfigMaps, no reads beyond its own kinds and the pods, Jobs, Services and Kubeflow
training jobs it starts (their pods' logs included, for `metricsSource: {type: logs}`). No `get`: the operator
lists and watches what it made, by its labels."""

LEADER_ELECTION_RULES: tuple[Rule, ...] = (
    Rule(("coordination.k8s.io",), ("leases",), ("get", "create", "update")),
)
"""What the operator may do in its own namespace: hold the Lease `ktune-operator` while it acts."""

ADMISSION_POLICY_NAME = "tuningjob-author-may-create-pods"
"""The name of the policy and of its binding, after the install's prefix (`ktune-` or the Helm release's)."""

ADMISSION_POLICY_WHY = (
    "Only someone who may create Pods in a namespace may create or change a TuningJob there: the operator "
    "creates the trial pods (under the ServiceAccount the job names in spec.trial.template.spec.serviceAccountName, "
    "default the namespace's `default`), so without this check a TuningJob would let its author run pods they "
    "could not run themselves; a job whose trials are resources (spec.trial.resource) needs create "
    "on their kind the same way (Jobs; PyTorchJobs, TFJobs, MPIJobs or XGBoostJobs of kubeflow.org). A job "
    "warm-starting from TuningJobs in other namespaces (spec.warmStart.from) reads their Trials with the "
    "operator's rights, so its author must be allowed to get TuningJobs and list Trials in each of those "
    "namespaces. It checks creations and changes of a job's spec, not the operator's or "
    "the garbage collector's metadata updates. Needs Kubernetes 1.30+ (admissionregistration.k8s.io/v1)."
)

# The warm-start sources in other namespaces. The policy sees the job as plain maps: `namespace` (a CEL keyword) is
# read as s['namespace']. The authorizer is checked in the validation itself: a messageExpression cannot use it,
# not even through a variable, so the message lists every source elsewhere.
_SOURCES_ELSEWHERE = (
    "has(object.spec.warmStart) && has(object.spec.warmStart.from) ? object.spec.warmStart.from.filter(s, "
    "'namespace' in s && s['namespace'] != object.metadata.namespace) : []"
)
_READS_THERE = ("authorizer.group('ktune.dev').resource('tuningjobs').namespace(s['namespace']).check('get')"
                ".allowed() && authorizer.group('ktune.dev').resource('trials').namespace(s['namespace'])"
                ".check('list').allowed()")

# The trial resource's [API group, plural] (empty for a trial pod): what its author must be allowed to create. The
# CRD's schema has refused any other kind before admission policies run.
_RESOURCE_APIS = "{" + ", ".join(f"'{api_version} {kind}': ['{adapter.api.group}', '{adapter.api.plural}']"
                                 for (api_version, kind), adapter in ADAPTERS.items()) + "}"
_TRIAL_RESOURCE_KIND = (
    "has(object.spec.trial) && has(object.spec.trial.resource) && has(object.spec.trial.resource.apiVersion) && "
    "has(object.spec.trial.resource.kind) ? object.spec.trial.resource.apiVersion + ' ' + "
    "object.spec.trial.resource.kind : ''"
)
_TRIAL_RESOURCE_API = ("variables.trialResourceKind in variables.resourceApis ? "
                       "variables.resourceApis[variables.trialResourceKind] : []")

ADMISSION_POLICY_SPEC: dict[str, Any] = {
    "failurePolicy": "Fail",
    "matchConstraints": {"resourceRules": [{
        "apiGroups": ["ktune.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
        "resources": ["tuningjobs"],
    }]},
    # Creating a job, or changing its spec: the operator's and the garbage collector's metadata updates pass.
    "matchConditions": [{
        "name": "spec-created-or-changed",
        "expression": "request.operation == 'CREATE' || object.spec != oldObject.spec",
    }],
    "variables": [{"name": "warmStartSourcesElsewhere", "expression": _SOURCES_ELSEWHERE},
                  {"name": "resourceApis", "expression": _RESOURCE_APIS},
                  {"name": "trialResourceKind", "expression": _TRIAL_RESOURCE_KIND},
                  {"name": "trialResourceApi", "expression": _TRIAL_RESOURCE_API}],
    "validations": [{
        "expression": "authorizer.group('').resource('pods').namespace(object.metadata.namespace)"
                      ".check('create').allowed()",
        "messageExpression": "'TuningJobs run their trials as pods: ' + request.userInfo.username + "
                             "' may not create pods in namespace ' + object.metadata.namespace + "
                             "', so may not create or change TuningJobs there (ask for pod create rights in that "
                             "namespace)'",
        "reason": "Forbidden",
    }, {
        "expression": "variables.warmStartSourcesElsewhere.all(s, " + _READS_THERE + ")",
        "messageExpression": "'spec.warmStart.from: ' + request.userInfo.username + ' may not read the TuningJobs "
                             "and Trials of every source in another namespace (' + variables.warmStartSourcesElsewhere"
                             ".map(s, s['namespace'] + '/' + s.name).join(', ') + '), so may not warm-start from "
                             "them (remove those, or ask for get on tuningjobs and list on trials in their "
                             "namespaces)'",
        "reason": "Forbidden",
    }, {
        # A resource trial (spec.trial.resource) is a Job or a Kubeflow job the operator creates: its author must be
        # allowed to create that kind.
        "expression": "size(variables.trialResourceApi) == 0 || authorizer.group(variables.trialResourceApi[0])"
                      ".resource(variables.trialResourceApi[1]).namespace(object.metadata.namespace)"
                      ".check('create').allowed()",
        "messageExpression": "'spec.trial.resource: the trials of this TuningJob are ' + "
                             "object.spec.trial.resource.kind + 's: ' + request.userInfo.username + ' may not create "
                             "' + variables.trialResourceApi[1] + ' (' + variables.trialResourceApi[0] + ') in "
                             "namespace ' + object.metadata.namespace + ', so may not create or change such "
                             "TuningJobs there (ask for create on ' + variables.trialResourceApi[1] + ' in that "
                             "namespace, or use spec.trial.template)'",
        "reason": "Forbidden",
    }],
}
"""The ValidatingAdmissionPolicy's spec."""

ADMISSION_VALIDATION_ACTIONS: list[str] = ["Deny"]
"""What the binding does with a request the policy refuses."""
