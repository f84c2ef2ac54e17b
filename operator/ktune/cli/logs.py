"""`ktune logs JOB TRIAL`: a trial's log, read through the API's `pods/log` as `kubectl logs` reads it.

Which pod: for a trial of one pod, its current attempt's pod (the Trial's `status.podName`); for a trial that is a
resource (a Job, a PyTorchJob, ...), its metrics pod, the one the operator reads metrics from: of the pods its
current resource (`status.resourceName`) controls, the newest one `spec.trial.primaryPod` (or the kind's default)
selects. `--all` prints every pod of the trial, every attempt's, oldest first, each under a `==> pod/NAME <==`
header. The log is the pod's first container's (the trainer) unless `--container` names another.

A trial's pods are deleted once its result is recorded (unless `KTUNE_OPERATOR_DELETE_SUCCEEDED_PODS=false`), and
a failed attempt's after `KTUNE_OPERATOR_FAILED_POD_RETENTION_SECONDS`: their logs go with them.
"""

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ktune import contract
from ktune.cli.cluster_commands import EXIT_FAILED, EXIT_OK, _connect

if TYPE_CHECKING:
    from ktune.operator.cluster import KubeCluster

LOG_TIMEOUT_SECONDS = 60.0


class LogsError(Exception):
    """Nothing to print: the message says why and what to do."""


def add_logs_command(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "logs", help="print a trial's pod log from the cluster",
        description="Print the log of a TuningJob trial's pod: its current attempt's pod, or for a Job or Kubeflow "
                    "trial its metrics pod (spec.trial.primaryPod); --all prints every pod of the trial.",
    )
    parser.add_argument("job", help="the TuningJob's name")
    parser.add_argument("trial", help="the trial's number (or its Trial's name, JOB-NUMBER)")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, or default)")
    parser.add_argument("--all", action="store_true", help="every pod of the trial, every attempt's, oldest first")
    parser.add_argument("-c", "--container", help="the container (default: each pod's first, the trainer)")
    parser.add_argument("--tail", type=int, metavar="LINES", help="only the last LINES lines of each log")
    parser.set_defaults(handler=logs_command)


def logs_command(args: argparse.Namespace) -> int:
    from ktune.operator.inspection import InspectionError

    try:
        cluster, namespace = _connect(args.namespace)
        print_logs(cluster, namespace, args.job, trial_number(args.job, args.trial), sys.stdout,
                   every_pod=args.all, container=args.container, tail=args.tail)
    except (InspectionError, LogsError) as error:
        print(f"ktune logs: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def trial_number(job: str, trial: str) -> int:
    text = trial.removeprefix(f"{job}-")
    if not text.isdigit():
        raise LogsError(f"trial {trial!r} is neither a number nor {job}-NUMBER (ktune status {job} lists them)")
    return int(text)


def print_logs(cluster: "KubeCluster", namespace: str, job: str, number: int, out: TextIO, *, every_pod: bool,
               container: str | None = None, tail: int | None = None) -> None:
    from ktune.operator.cluster import ApiError

    trial = _read(cluster, namespace, job, number)
    pods = trial_pods(cluster, namespace, job, number)
    if not every_pod:
        pod = current_pod(cluster, namespace, job, trial, pods)
        pods = [pod] if pod is not None else []
    if not pods:
        raise LogsError(f"trial {number} of {namespace}/{job} has no pod now (a trial's pods are deleted once its "
                        "result is recorded, unless the operator runs with KTUNE_OPERATOR_DELETE_SUCCEEDED_PODS=false)")
    unreadable = []
    for pod in pods:
        name = pod["metadata"]["name"]
        query = {"container": container or pod["spec"]["containers"][0]["name"]}
        if tail is not None:
            query["tailLines"] = str(tail)
        if every_pod:
            out.write(f"==> pod/{name} <==\n")
        try:
            text = cluster.read_pod_log(namespace, name, query, LOG_TIMEOUT_SECONDS)
        except ApiError as error:  # e.g. a pod still waiting to start; with --all the other pods are printed
            unreadable.append(f"cannot read the log of pod {namespace}/{name}: {error}")
            continue
        out.write(text if not text or text.endswith("\n") else text + "\n")
    if unreadable:
        raise LogsError("; ".join(unreadable))


def _read(cluster: "KubeCluster", namespace: str, job: str, number: int) -> dict[str, Any]:
    from ktune.operator.cluster import TRIALS, ApiError
    from ktune.operator.pods import trial_name

    name = trial_name(job, number)
    try:
        return cluster.request("GET", f"{TRIALS.format(ns=namespace)}/{name}")
    except ApiError as error:
        if error.status == 404:
            raise LogsError(f"Trial {namespace}/{name} not found (ktune status {job} -n {namespace} lists the "
                            "trials)") from None
        raise LogsError(f"cannot read Trial {namespace}/{name}: {error}") from None


def trial_pods(cluster: "KubeCluster", namespace: str, job: str, number: int) -> list[dict[str, Any]]:
    """Every pod of the trial (every attempt's, a resource trial's every replica), oldest first."""
    from ktune.operator.cluster import PODS

    selector = f"{contract.LABEL_TUNINGJOB}={job},{contract.LABEL_TRIAL}={number}"
    pods = cluster.list_all(PODS.format(ns=namespace), selector)
    return sorted(pods, key=lambda pod: (pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"]))


def current_pod(cluster: "KubeCluster", namespace: str, job: str, trial: Mapping[str, Any],
                pods: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The current attempt's pod, or a resource trial's metrics pod (as the operator picks it)."""
    status = trial.get("status") or {}
    if status.get("podName"):
        return next((pod for pod in pods if pod["metadata"]["name"] == status["podName"]), None)
    resource_name, kind = status.get("resourceName"), status.get("kind")
    if not resource_name:
        return pods[-1] if pods else None  # not launched yet, or written by an operator before Trial kinds
    from ktune.operator.resource_adapters import metrics_pod

    owned = [pod for pod in pods if _controller(pod) == (kind, resource_name)]
    return metrics_pod(owned, _primary_pod_selector(cluster, namespace, job))


def _controller(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    for reference in pod["metadata"].get("ownerReferences") or []:
        if reference.get("controller"):
            return reference.get("kind"), reference.get("name")
    return None


def _primary_pod_selector(cluster: "KubeCluster", namespace: str, job: str) -> dict[str, Any] | None:
    from ktune.operator.inspection import read_study

    resource = read_study(cluster, namespace, job).spec.trial.resource
    return resource.primary_pod if resource is not None else None


COMMANDS = [add_logs_command]
