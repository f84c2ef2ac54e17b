"""The cluster subcommands of `ktune`: `operator`, `status` and `export` (registered in `ktune.cli`)."""

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from ktune.operator.settings import OperatorSettings

if TYPE_CHECKING:
    from ktune.operator.cluster import KubeCluster

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def add_operator_command(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "operator", help="run the Kubernetes operator (watches TuningJobs, runs one pod per trial)",
        description="Run the ktune operator against the cluster of $KUBECONFIG (or the pod's ServiceAccount). "
                    "Settings: KTUNE_OPERATOR_* environment variables (see ktune.operator.settings).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", action="append", default=[], metavar="NAMESPACE",
                       help="watch TuningJobs in this namespace (repeat for several)")
    where.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch TuningJobs in every namespace (the default without --namespace)")
    parser.add_argument("--peering", metavar="NAME",
                        help="coordinate with other operators through kopf's peering object NAME (needs kopf's "
                             "peering CRDs); default: standalone, run one replica")
    parser.add_argument("--leader-election", metavar="NAMESPACE", nargs="?", const="", default=None,
                        help="act only while holding the Lease ktune-operator in NAMESPACE (default: $POD_NAMESPACE "
                             "or ktune-system), so that several replicas can run with one active")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve the operator's Prometheus metrics (ktune_*) on this port")
    parser.add_argument("--liveness", metavar="URL",
                        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.set_defaults(handler=run_operator_command)


def run_operator_command(args: argparse.Namespace) -> int:
    from ktune.operator.handlers import RunOptions, run_operator

    try:
        settings = OperatorSettings.from_env()
    except ValueError as error:
        print(f"ktune operator: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    election = args.leader_election
    if election == "":
        election = os.environ.get("POD_NAMESPACE") or "ktune-system"
    run_operator(RunOptions(namespaces=args.namespace, all_namespaces=not args.namespace, peering=args.peering,
                            liveness=args.liveness, leader_election_namespace=election,
                            metrics_port=args.metrics_port), settings)
    return EXIT_OK


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the TuningJob's name")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, or default)")


def add_status_command(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "status", help="show a TuningJob's trials on the cluster (or every job of the namespace)",
        description="Print a TuningJob's phase, best trial and every trial (read from its Trial objects); "
                    "without a name, one line per TuningJob of the namespace.",
    )
    parser.add_argument("job", nargs="?", help="the TuningJob's name (default: list every job of the namespace)")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, or default)")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table",
                        help="json: the job's status and trials (or {\"items\": [...]}) as one JSON document")
    parser.add_argument("-w", "--watch", action="store_true",
                        help="print again whenever it changes; with a name, stop once the job has finished")
    parser.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                        help="how often --watch reads the cluster (default 2)")
    parser.set_defaults(handler=status_command)


def add_export_command(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "export", help="copy a TuningJob's trials from the cluster into an Optuna storage",
        description="Write a TuningJob's finished trials into a new Optuna study, e.g. for optuna-dashboard.",
    )
    _add_job_arguments(parser)
    parser.add_argument("--storage", required=True, help="an Optuna storage URL, e.g. sqlite:///ktune.db")
    parser.add_argument("--study-name", help="the study's name in the storage (default: NAMESPACE.JOB)")
    parser.set_defaults(handler=export_command)


def status_command(args: argparse.Namespace) -> int:
    from ktune.operator.inspection import InspectionError

    try:
        cluster, namespace = _connect(args.namespace)
        shown = None
        while True:
            text, done = _status_view(cluster, namespace, args.job, args.output, args.watch)
            if text != shown:
                print(text if shown is None or args.output == "json" else f"\n{text}", flush=True)
                shown = text
            if not args.watch or done:
                return EXIT_OK
            time.sleep(args.interval)
    except InspectionError as error:
        print(f"ktune status: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


def _status_view(cluster: "KubeCluster", namespace: str, job: str | None, output: str,
                 watch: bool) -> tuple[str, bool]:
    """What `ktune status` prints now, and whether a watch of it is over (the named job has finished). JSON is
    indented, or one document per line when watching."""
    from ktune.operator.inspection import (
        job_summary,
        jobs_table,
        list_jobs,
        read_study,
        settled,
        status_json,
        status_report,
    )

    indent = None if watch else 2
    if job is None:
        jobs = list_jobs(cluster, namespace)
        if output == "json":
            return json.dumps({"items": [job_summary(item) for item in jobs]}, sort_keys=True, indent=indent), False
        return (jobs_table(jobs) if jobs else f"No TuningJobs in namespace {namespace}."), False
    study = read_study(cluster, namespace, job)
    if output == "json":
        return json.dumps(status_json(study), sort_keys=True, indent=indent), settled(study.job)
    return status_report(study), settled(study.job)


def export_command(args: argparse.Namespace) -> int:
    import optuna

    from ktune.operator.inspection import InspectionError, export_study, read_study

    try:
        cluster, namespace = _connect(args.namespace)
        study = read_study(cluster, namespace, args.job)
    except InspectionError as error:
        print(f"ktune export: {error}", file=sys.stderr)
        return EXIT_FAILED
    name = args.study_name or f"{namespace}.{args.job}"
    try:
        written = export_study(study, args.storage, name)
    except optuna.exceptions.DuplicatedStudyError:
        print(f"ktune export: study {name!r} exists already in {args.storage}; pass --study-name", file=sys.stderr)
        return EXIT_FAILED
    print(f"Wrote {written} trials of {namespace}/{args.job} to study {name!r} in {args.storage}")
    print(f"Dashboard: optuna-dashboard {args.storage}")
    return EXIT_OK


def _connect(namespace: str | None) -> "tuple[KubeCluster, str]":
    from kubernetes import config

    from ktune.operator.cluster import KubeCluster
    from ktune.operator.inspection import InspectionError

    try:
        cluster = KubeCluster.from_environment()
    except config.ConfigException as error:
        raise InspectionError(f"no cluster to talk to: {error} (set KUBECONFIG)") from None
    if namespace is None:
        try:
            _, active = config.list_kube_config_contexts()
            namespace = (active.get("context") or {}).get("namespace")
        except config.ConfigException:
            namespace = None
    return cluster, namespace or "default"


COMMANDS = [add_operator_command, add_status_command, add_export_command]
