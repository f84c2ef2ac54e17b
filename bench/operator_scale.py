"""Operator overhead at scale on the real test control plane, with instant stand-in trials.

Starts etcd + kube-apiserver + kube-controller-manager and the test node agent (tests/cluster), installs
the CRDs and the operator's RBAC, runs `ktune operator` as a subprocess with its ServiceAccount's token
(exactly as tests/operator do), creates `--jobs` TuningJobs of `--trials` trials each at `--parallelism`,
whose trials run tests/stand_in_trainer.py for one step with no sleep, and waits for all of them to finish.

Measured:
- latency from a trial pod's termination to the creation of the job's next trial pod (p50/p99): the times
  are when this script's pod watch saw each event (millisecond resolution; the API's finishedAt and
  creationTimestamp have one-second resolution). Only terminations followed by a new pod count (the
  last `parallelism` pods of a job have no successor);
- trials completed per second, from the first job created to the last job finished;
- API requests per trial: kube-apiserver's `apiserver_request_total` before/after (its /metrics, read with
  the admin certificate), in total and for the operator's resources (tuningjobs, trials, pods create);
  the script's own polling requests are subtracted;
- operator CPU-seconds (utime + stime of the process, /proc), also per trial, and peak RSS (VmHWM);
- the largest TuningJob object (bytes of its JSON at the end).

The operator subprocess imports the same `ktune` as this script: to measure another checkout (a `git worktree`
of an earlier commit, say), run this from that checkout with its `operator/` first on PYTHONPATH. The result
records which checkout, commit and changed files it measured (`operator_source`).

    python -m bench.operator_scale --jobs 20 --trials 100 --parallelism 10   # the issue's scale
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import kubernetes

import ktune
from bench.results import machine, markdown_table, write_results
from tests.cluster.controlplane import Cluster, ControlPlane, binary_dir
from tests.operator.operator_harness import OperatorProcess, apply, install_manifests, stand_in_job

JOB_LABEL = "ktune.dev/tuningjob"
OPERATOR_RESOURCES = ("tuningjobs", "trials")


class PodWatch(threading.Thread):
    """Records, per job, when each trial pod was first seen and when it was first seen terminated."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace
        self.created: dict[str, tuple[str, float]] = {}
        self.terminated: dict[str, tuple[str, float]] = {}
        self.watch = kubernetes.watch.Watch()

    def run(self) -> None:
        try:
            self._record()
        except Exception:  # the control plane stopped under the watch at the end
            return

    def _record(self) -> None:
        for event in self.watch.stream(self.core.list_namespaced_pod, self.namespace, label_selector=JOB_LABEL):
            now = time.monotonic()
            pod = event["object"]
            job, name = pod.metadata.labels[JOB_LABEL], pod.metadata.name
            self.created.setdefault(name, (job, now))
            statuses = pod.status.container_statuses or []
            if any(status.state and status.state.terminated for status in statuses):
                self.terminated.setdefault(name, (job, now))

    def latencies(self) -> list[float]:
        """Seconds from each termination to the next pod created in the same job after it."""
        created_by_job: dict[str, list[float]] = defaultdict(list)
        for job, at in self.created.values():
            created_by_job[job].append(at)
        result = []
        for job, ended in self.terminated.values():
            later = [at for at in created_by_job[job] if at >= ended]
            if later:
                result.append(min(later) - ended)
        return result


def request_counts(cluster: Cluster) -> Counter[tuple[str, str]]:
    """(resource, verb) -> apiserver_request_total summed over the other labels."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    counts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{"):].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split(","))
        labels = {key: val.strip('"') for key, val in labels.items()}
        counts[(labels.get("resource", ""), labels.get("verb", ""))] += float(value)
    return counts


def process_usage(pid: int) -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"cpu_seconds": cpu, "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024}


def operator_source() -> dict[str, Any]:
    """The checkout whose `ktune` the operator runs: its path, commit and files changed from that commit."""
    root = Path(ktune.__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False).stdout

    return {"path": str(root), "commit": git("rev-parse", "HEAD").strip(),
            "changed_files": git("status", "--porcelain", "--untracked-files=no").splitlines()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Starts a control plane and a node agent for this run, measures, and stops them."""
    control_plane = ControlPlane(workdir=workdir, bin_dir=binary_dir())
    cluster = control_plane.start()
    agent = cluster.start_node_agent("ktune-node-0", cpu="64", memory="256Gi", pods=500)
    try:
        kubeconfig = install_manifests(cluster)
        core = kubernetes.client.CoreV1Api(cluster.api)
        core.create_namespace({"metadata": {"name": "bench"}})
        while not core.list_namespaced_service_account("bench", field_selector="metadata.name=default").items:
            time.sleep(0.2)
        return measure(cluster, kubeconfig, "bench", args, workdir / "operator.log")
    finally:
        agent.stop()
        control_plane.stop()


def measure(cluster: Cluster, kubeconfig: Path, namespace: str, args: argparse.Namespace,
            log_path: Path) -> dict[str, Any]:
    """Runs the operator on `namespace` of a running cluster (CRDs and RBAC installed) and the jobs in it."""
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    operator = OperatorProcess(kubeconfig, [namespace], log_path,
                               extra_env={"KTUNE_OPERATOR_RECONCILE_INTERVAL_SECONDS": str(args.reconcile_interval)})
    operator.start()
    try:
        watch = PodWatch(cluster.api, namespace)
        watch.start()
        time.sleep(3)  # the operator is up and listing
        before = request_counts(cluster)
        started = time.monotonic()
        names = [f"scale-{index:02d}" for index in range(args.jobs)]
        for name in names:
            job = stand_in_job(name, namespace, args=["--steps", "1", "--step-seconds", "0"],
                               budget={"maxTrials": args.trials, "parallelism": args.parallelism})
            apply(cluster, job)
        polls, phases = 0, {}
        while time.monotonic() - started < args.timeout:
            items = custom.list_namespaced_custom_object("ktune.dev", "v1alpha1", namespace, "tuningjobs")["items"]
            polls += 1
            phases = {item["metadata"]["name"]: (item.get("status") or {}).get("phase") for item in items}
            if len(phases) == len(names) and all(phase in ("Succeeded", "Failed") for phase in phases.values()):
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        usage = process_usage(operator.process.pid)
        after = request_counts(cluster)
        jobs = custom.list_namespaced_custom_object("ktune.dev", "v1alpha1", namespace, "tuningjobs")["items"]
        trials = custom.list_namespaced_custom_object("ktune.dev", "v1alpha1", namespace, "trials")["items"]
    finally:
        operator.stop()
    delta = {key: after[key] - before.get(key, 0) for key in after if after[key] - before.get(key, 0) > 0}
    delta[("tuningjobs", "LIST")] = delta.get(("tuningjobs", "LIST"), 0) - polls  # this script's polls
    total_trials = sum(1 for trial in trials)
    succeeded = sum(1 for trial in trials if (trial.get("status") or {}).get("state") == "Succeeded")
    latencies = watch.latencies()
    operator_requests = sum(value for (resource, verb), value in delta.items()
                            if resource in OPERATOR_RESOURCES or (resource == "pods" and verb == "POST"))
    return {
        "machine": machine(),
        "operator_source": operator_source(),
        "note": "API requests count every client of the shared kube-apiserver during the run",
        "settings": {"jobs": args.jobs, "trials": args.trials, "parallelism": args.parallelism,
                     "reconcile_interval_seconds": args.reconcile_interval},
        "finished_jobs": sum(1 for phase in phases.values() if phase in ("Succeeded", "Failed")),
        "job_phases": dict(Counter(phases.values())),
        "trials": total_trials, "succeeded_trials": succeeded, "seconds": elapsed,
        "trials_per_second": total_trials / elapsed,
        "pod_turnaround_seconds": {"count": len(latencies), "p50": percentile(latencies, 0.5),
                                   "p99": percentile(latencies, 0.99), "mean": statistics.fmean(latencies),
                                   "max": max(latencies)} if latencies else None,
        "api_requests": {"total": sum(delta.values()), "per_trial": sum(delta.values()) / max(total_trials, 1),
                         "operator_resources_per_trial": operator_requests / max(total_trials, 1),
                         "by_resource_verb": {f"{resource or '-'} {verb}": value
                                              for (resource, verb), value in sorted(delta.items())}},
        "operator": {**usage, "cpu_seconds_per_trial": usage["cpu_seconds"] / max(total_trials, 1)},
        "largest_tuningjob_bytes": max(len(json.dumps(job)) for job in jobs),
    }


def table(result: dict[str, Any]) -> str:
    settings, turnaround, api = result["settings"], result["pod_turnaround_seconds"] or {}, result["api_requests"]
    rows = [[f"{settings['jobs']} × {settings['trials']}", settings["parallelism"],
             f"{result['succeeded_trials']}/{result['trials']}", turnaround.get("p50", "-"), turnaround.get("p99", "-"),
             result["trials_per_second"], api["per_trial"], api["operator_resources_per_trial"],
             result["operator"]["cpu_seconds"], result["operator"]["cpu_seconds_per_trial"],
             result["operator"]["peak_rss_mib"], result["largest_tuningjob_bytes"]]]
    return markdown_table(["jobs × trials", "parallelism", "succeeded/trials", "pod→next pod p50 s",
                           "p99 s", "trials/s", "API requests/trial (all clients)",
                           "operator-resource requests/trial", "operator CPU s", "operator CPU s/trial",
                           "operator peak RSS MiB", "largest TuningJob bytes"], rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--reconcile-interval", type=float, default=2.0, help="the operator's (2.0 is its default)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--name", default="operator_scale")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ktune-bench-") as workdir:
        result = run(args, Path(workdir))
    markdown = table(result)
    write_results(args.name, result, markdown, args.out_dir)
    print(markdown)
    print(json.dumps(result["api_requests"]["by_resource_verb"], indent=1))


if __name__ == "__main__":
    main()
