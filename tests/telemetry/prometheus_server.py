"""A real Prometheus (Debian's `prometheus` package) for tests: loopback only, data in a temp dir.

Trial pods are found the way a PodMonitor finds them: pods labelled app.kubernetes.io/managed-by=ktune,
their IP and metrics port, with the labels the chart's relabelling gives (namespace, tuningjob, trial).
`TrialPodTargets` writes them into a file_sd file that Prometheus rereads every second.
"""

import json
import math
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes

from ktune import contract
from ktune.operator.pods import METRICS_PORT_NAME
from tests.cluster.controlplane import free_port

SCRAPE_INTERVAL = "1s"
# What Grafana's $__rate_interval becomes with a 1 s scrape interval: 4 x the scrape interval.
RATE_INTERVAL = "4s"


class PrometheusServer:
    """`prometheus` as a subprocess scraping `static_targets` (job name -> host:port) and a file_sd file."""

    def __init__(self, workdir: Path, static_targets: dict[str, str], file_sd_job: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise AssertionError("no prometheus binary: run scripts/ensure-debian-packages prometheus=prometheus "
                                 "(scripts/test does) or apt-get install prometheus")
        self.workdir = workdir
        self.file_sd = workdir / "trial-targets.json"
        self.file_sd.write_text("[]")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        scrape_configs = [{"job_name": job, "static_configs": [{"targets": [target]}]}
                          for job, target in static_targets.items()]
        scrape_configs.append({"job_name": file_sd_job,
                               "file_sd_configs": [{"files": [str(self.file_sd)], "refresh_interval": "1s"}]})
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({"global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
                                      "scrape_configs": scrape_configs}))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        url = f"{self.base_url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step)["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        return self.api(f"label/{label}/values", **{"match[]": match})

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    """The finite sample values of an instant (`value`) or range (`values`) query result."""
    pairs = [series["value"] for series in result if "value" in series]
    pairs += [pair for series in result for pair in series.get("values", [])]
    return [float(v) for _, v in pairs if math.isfinite(float(v))]


class TrialPodTargets:
    """Keeps `file_sd` listing the running trial pods of `namespace` (what the chart's PodMonitor selects)."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, file_sd: Path) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace
        self.file_sd = file_sd
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trial-pod-targets", daemon=True)

    def __enter__(self) -> "TrialPodTargets":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY}").items
            groups = [self._target_group(pod) for pod in pods if pod.status.phase == "Running" and pod.status.pod_ip]
            self._write([g for g in groups if g is not None])

    def _target_group(self, pod: kubernetes.client.V1Pod) -> dict[str, Any] | None:
        port = next((p.container_port for c in pod.spec.containers for p in c.ports or []
                     if p.name == METRICS_PORT_NAME), None)
        if port is None:
            return None
        self.seen.add(pod.metadata.name)
        labels = pod.metadata.labels
        return {"targets": [f"{pod.status.pod_ip}:{port}"],
                "labels": {"namespace": self.namespace, "pod": pod.metadata.name,
                           "tuningjob": labels[contract.LABEL_TUNINGJOB], "trial": labels[contract.LABEL_TRIAL]}}

    def _write(self, groups: list[dict[str, Any]]) -> None:
        partial = self.file_sd.with_suffix(".partial")
        partial.write_text(json.dumps(groups))
        os.replace(partial, self.file_sd)
