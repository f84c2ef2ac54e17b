"""The rendezvous of an Indexed Job trial's ranks on a cluster: a headless Service per attempt, and torchrun's
variables in every container.

An Indexed Job of N > 1 completions is one distributed training run of N ranks, one per pod. The ranks meet at
rank 0 (`MASTER_ADDR:MASTER_PORT`), so they need a name for the pod with completion index 0 that a real cluster
resolves. The Job controller names that pod's host `<job>-0` (`spec.hostname`, kube-controller-manager's
job_controller.go); with the pod template's `subdomain` set to a headless Service that selects the Job's pods,
cluster DNS serves `<job>-0.<service>` (through the search path of the pod's resolv.conf) for it, also before it
is Ready (`publishNotReadyAddresses`). So for each attempt the operator:

- builds the Job with `subdomain: <job>` and, in every container that does not set them itself, `MASTER_ADDR=
  <job>-0.<job>`, `MASTER_PORT=29500`, `WORLD_SIZE=<completions>`, `RANK` (the pod's completion index, from the
  downward API), `LOCAL_RANK=0` and `LOCAL_WORLD_SIZE=1` (one rank per pod): what `ktune run` gives each rank;
- creates the Service `<job>` after the Job, owned by it, so the garbage collector deletes it with the Job.

A template that sets its own `subdomain` keeps it, and gets no Service from ktune (its author provides one);
`MASTER_ADDR` then names index 0 under that subdomain. A Service name held by anything but the attempt's Job
defers the launch (`ServiceNameTaken`) until it is gone, like a Job name held by another owner. The operator
needs only create and list on Services: the garbage collector deletes them.
"""

import copy
import re
from collections.abc import Mapping
from typing import Any

from ktune import contract
from ktune.operator.cluster import AlreadyExists, ApiError, ApiResource, Cluster
from ktune.operator.pods import controller_uid
from ktune.trials.backend import LaunchDeferred, LaunchRefused

SERVICES = ApiResource("v1", "services")
MASTER_PORT = 29500
"""torchrun's default rendezvous port: free in each pod, as every pod has its own network namespace."""
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set by the Job controller on each of its pods: the Service's selector."""
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def needs_rendezvous(trial_job: Mapping[str, Any]) -> bool:
    """Whether the Job is one run of several ranks: Indexed with more than one completion."""
    spec = trial_job.get("spec") or {}
    return spec.get("completionMode") == "Indexed" and int(spec.get("completions") or 1) > 1


def _pod_spec(trial_job: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((trial_job.get("spec") or {}).get("template") or {}).get("spec") or {}


def _own_service(trial_job: Mapping[str, Any]) -> bool:
    """Whether ktune makes the Job's Service: it needs a rendezvous and its template names no subdomain of its own
    (`with_rendezvous` sets the subdomain to the Job's name)."""
    return needs_rendezvous(trial_job) and _pod_spec(trial_job).get("subdomain") == trial_job["metadata"]["name"]


def rendezvous_env(name: str, subdomain: str, completions: int) -> list[dict[str, Any]]:
    """The variables each rank of Job `name` gets (torchrun's, for one rank per pod)."""
    rank = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}
    return [
        {"name": "MASTER_ADDR", "value": f"{name}-0.{subdomain}"},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "WORLD_SIZE", "value": str(completions)},
        {"name": "RANK", "valueFrom": rank},
        {"name": "LOCAL_RANK", "value": "0"},
        {"name": "LOCAL_WORLD_SIZE", "value": "1"},
    ]


def with_rendezvous(trial_job: Mapping[str, Any]) -> dict[str, Any]:
    """The Job manifest with the subdomain and the rank variables set (a copy; unchanged unless it
    `needs_rendezvous`). LaunchRefused when the Job's name cannot name a Service."""
    made = copy.deepcopy(dict(trial_job))
    if not needs_rendezvous(made):
        return made
    name = made["metadata"]["name"]
    pod = made["spec"]["template"]["spec"]
    if not pod.get("subdomain"):
        if len(name) > 63 or not _DNS_1035_LABEL.fullmatch(name):
            raise LaunchRefused("ServiceNameInvalid", f"the trial's Job {name} needs a headless Service of the same "
                                "name for its ranks' rendezvous, and a Service name must be a DNS-1035 label (a "
                                "lowercase letter first, at most 63 characters): rename the TuningJob")
        pod["subdomain"] = name
    variables = rendezvous_env(name, pod["subdomain"], int(made["spec"]["completions"]))
    for container in pod.get("containers") or []:
        own = {var.get("name") for var in container.get("env") or []}
        container["env"] = [var for var in variables if var["name"] not in own] + list(container.get("env") or [])
    return made


def service_manifest(trial_job: Mapping[str, Any]) -> dict[str, Any]:
    """The headless Service of a created Job (it has its uid): named like it, selecting its pods, owned by it."""
    metadata = trial_job["metadata"]
    name = metadata["name"]
    labels = {key: value for key, value in (metadata.get("labels") or {}).items()
              if key in (contract.LABEL_MANAGED_BY, contract.LABEL_TUNINGJOB, contract.LABEL_TRIAL)}
    # Not blockOwnerDeletion: the Job's foreground deletion waits for its pods (the GPUs), not for this Service.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": metadata["uid"], "controller": True}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
        "spec": {"clusterIP": "None", "selector": {JOB_NAME_LABEL: name}, "publishNotReadyAddresses": True},
    }


def ensure_service(cluster: Cluster, namespace: str, trial_job: Mapping[str, Any]) -> None:
    """Create the created Job's Service unless it exists (an operator restarted after making it); LaunchDeferred
    while another object holds its name: the launch is tried again at the next pass, and the Job, already the
    trial's, is kept (its ranks wait for rank 0's name, within PyTorch's rendezvous timeout)."""
    if not _own_service(trial_job):
        return
    name = trial_job["metadata"]["name"]
    try:
        cluster.create_trial_resource(namespace, SERVICES, service_manifest(trial_job))
    except AlreadyExists:
        tuningjob = trial_job["metadata"]["labels"][contract.LABEL_TUNINGJOB]
        ours = [service for service in cluster.list_trial_resources(namespace, SERVICES, tuningjob)
                if service["metadata"]["name"] == name]
        if not ours or controller_uid(ours[0]) != trial_job["metadata"]["uid"]:
            holder = controller_uid(ours[0]) if ours else None
            raise LaunchDeferred("ServiceNameTaken", f"Service {name} exists and is not this trial's Job's (its "
                                 f"controller: {holder or 'none'}); waiting for it to be deleted") from None
    except ApiError as error:
        if error.status == 403 and "exceeded quota" in str(error):
            raise LaunchDeferred("QuotaExceeded", str(error)) from None
        raise
