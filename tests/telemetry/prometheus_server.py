"""A real Prometheus (Debian's `prometheus` package) for tests: loopback only, data in a temp dir."""

import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes

from tests.cluster.controlplane import free_port

SCRAPE_INTERVAL = "1s"
# What Grafana's $__rate_interval becomes with a 1 s scrape interval: 4 x the scrape interval.
RATE_INTERVAL = "4s"


class PrometheusServer:
    """`prometheus` as a subprocess with the given scrape configs (Prometheus' own YAML schema, as dicts)."""

    def __init__(self, workdir: Path, scrape_configs: list[dict[str, Any]] | None = None, *,
                 config: dict[str, Any] | None = None) -> None:
        """Either `scrape_configs` (with a 1 s global interval) or a whole `config` as Prometheus reads it."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise AssertionError("no prometheus binary: run scripts/ensure-debian-packages prometheus=prometheus "
                                 "(scripts/test does) or apt-get install prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config or {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "scrape_configs": scrape_configs or []}))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
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


def pod_monitor_scrape_config(job_name: str, pod_monitor: dict[str, Any], file_sd: Path) -> dict[str, Any]:
    """The scrape config prometheus-operator makes of a PodMonitor (the parts ktune's uses), over a file_sd file.

    Debian's Prometheus is built without Kubernetes discovery, so `TrialPodTargets` discovers the pods
    and writes them with the `__meta_kubernetes_*` labels Kubernetes discovery would give; the port
    selection, prometheus-operator's namespace/pod/container labels and the monitor's own relabelings
    then run in Prometheus as they would on a cluster.
    """
    endpoint = pod_monitor["spec"]["podMetricsEndpoints"][0]
    relabel_configs = [
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": endpoint["port"],
         "action": "keep"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        *({re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), key): value for key, value in rule.items()}
          for rule in endpoint.get("relabelings", [])),
    ]
    return {
        "job_name": job_name,
        "metrics_path": endpoint.get("path", "/metrics"),
        "file_sd_configs": [{"files": [str(file_sd)], "refresh_interval": "1s"}],
        "relabel_configs": relabel_configs,
    }


def meta_label_name(label: str) -> str:
    """A pod label as Kubernetes discovery names it: ktune.dev/trial -> __meta_kubernetes_pod_label_ktune_dev_trial."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


class TrialPodTargets:
    """Keeps `file_sd` listing the running pods that `pod_monitor` selects in `namespace`, one target per port."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, pod_monitor: dict[str, Any],
                 file_sd: Path) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace
        self.selector = ",".join(f"{k}={v}" for k, v in pod_monitor["spec"]["selector"]["matchLabels"].items())
        self.file_sd = file_sd
        self.file_sd.write_text("[]")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trial-pod-targets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
            groups = [group for pod in pods if pod.status.phase == "Running" and pod.status.pod_ip
                      for group in self._target_groups(pod)]
            partial = self.file_sd.with_suffix(".partial")
            partial.write_text(json.dumps(groups))
            os.replace(partial, self.file_sd)

    def _target_groups(self, pod: kubernetes.client.V1Pod) -> list[dict[str, Any]]:
        meta = {"__meta_kubernetes_namespace": pod.metadata.namespace,
                "__meta_kubernetes_pod_name": pod.metadata.name,
                **{meta_label_name(k): v for k, v in (pod.metadata.labels or {}).items()}}
        return [{"targets": [f"{pod.status.pod_ip}:{port.container_port}"],
                 "labels": {**meta, "__meta_kubernetes_pod_container_name": container.name,
                            "__meta_kubernetes_pod_container_port_name": port.name or ""}}
                for container in pod.spec.containers for port in container.ports or []]
