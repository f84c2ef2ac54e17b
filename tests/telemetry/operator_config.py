"""prometheus-operator's generated Prometheus configuration, fed to the test's own Prometheus process.

prometheus-operator writes a Prometheus object's configuration, gzipped, into the Secret
`prometheus-<name>` (key prometheus.yaml.gz); in a cluster its config-reloader sidecar unpacks it for the
Prometheus container and expands `$(SHARD)` / `$(POD_NAME)` from its environment. `generated_config` does the
same (`reloader_expanded`).

The one rewrite before Prometheus reads it (`with_file_discovery`): Debian's `prometheus` package is built
without Kubernetes service discovery (`promtool check config` on a `kubernetes_sd_configs` block fails with
"field kubernetes_sd_configs not found in type config.ScrapeConfig"), so each scrape job's
`kubernetes_sd_configs` becomes a `file_sd_configs` file that `KubernetesTargets` keeps filled from the
API server with the `__meta_kubernetes_*` labels Kubernetes discovery gives for the `pod` and `endpoints`
roles (one target per container port / endpoint port, labels named as Prometheus' discovery names them; the
endpoints from the Services' selectors, see `endpoints_targets`).
Everything else the operator generated (every relabel rule, honor_labels, intervals, paths) runs unchanged.
"""

import base64
import gzip
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from tests.cluster.waiting import wait_until

CONFIG_KEY = "prometheus.yaml.gz"


def generated_config(api: kubernetes.client.ApiClient, namespace: str, prometheus: str,
                     jobs: list[str], timeout: float = 120) -> dict[str, Any]:
    """The operator's configuration for the Prometheus object, once it holds every scrape job in `jobs`."""
    core = kubernetes.client.CoreV1Api(api)

    def ready() -> dict[str, Any] | None:
        try:
            secret = core.read_namespaced_secret(f"prometheus-{prometheus}", namespace)
        except kubernetes.client.ApiException:
            return None
        data = (secret.data or {}).get(CONFIG_KEY)
        config = yaml.safe_load(reloader_expanded(gzip.decompress(base64.b64decode(data)).decode(), prometheus)) \
            if data else None
        names = {job["job_name"] for job in (config or {}).get("scrape_configs") or []}
        return config if config and set(jobs) <= names else None

    return wait_until(ready, f"Secret prometheus-{prometheus} to hold scrape jobs {jobs}", timeout=timeout)


def reloader_expanded(text: str, prometheus: str) -> str:
    """What prometheus-config-reloader does before Prometheus reads the file: `$(VAR)` becomes the container's
    environment variable; the operator's StatefulSet sets SHARD (0 for one shard) and POD_NAME."""
    env = {"SHARD": "0", "POD_NAME": f"prometheus-{prometheus}-0"}
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def with_file_discovery(config: dict[str, Any], directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The config with each job's kubernetes_sd_configs replaced by a file_sd file; and what to discover there."""
    jobs, discoveries = [], []
    for job in config.get("scrape_configs") or []:
        job = dict(job)
        files = []
        for index, sd in enumerate(job.pop("kubernetes_sd_configs", [])):
            path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', job['job_name'])}-{index}.json"
            path.write_text("[]")
            discoveries.append({"role": sd["role"], "namespaces": (sd.get("namespaces") or {}).get("names"),
                                "file": path})
            files.append(str(path))
        if files:
            job["file_sd_configs"] = [{"files": files, "refresh_interval": "1s"}]
        jobs.append(job)
    return {**config, "scrape_configs": jobs}, discoveries


def sanitized(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def object_labels(prefix: str, metadata: Any) -> dict[str, str]:
    """`<prefix>_label_<name>` and `<prefix>_labelpresent_<name>` as Kubernetes discovery writes them."""
    labels = metadata.labels or {}
    return {**{f"{prefix}_label_{sanitized(k)}": v for k, v in labels.items()},
            **{f"{prefix}_labelpresent_{sanitized(k)}": "true" for k in labels}}


def pod_meta(pod: Any) -> dict[str, str]:
    owner = next((o for o in pod.metadata.owner_references or [] if o.controller), None)
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    meta = {"__meta_kubernetes_namespace": pod.metadata.namespace,
            "__meta_kubernetes_pod_name": pod.metadata.name,
            "__meta_kubernetes_pod_ip": pod.status.pod_ip or "",
            "__meta_kubernetes_pod_ready": str(ready).lower(),
            "__meta_kubernetes_pod_phase": pod.status.phase or "",
            "__meta_kubernetes_pod_node_name": pod.spec.node_name or "",
            "__meta_kubernetes_pod_host_ip": pod.status.host_ip or "",
            "__meta_kubernetes_pod_uid": pod.metadata.uid,
            **object_labels("__meta_kubernetes_pod", pod.metadata)}
    if owner:
        meta |= {"__meta_kubernetes_pod_controller_kind": owner.kind,
                 "__meta_kubernetes_pod_controller_name": owner.name}
    return meta


def container_port_meta(container: Any, port: Any) -> dict[str, str]:
    return {"__meta_kubernetes_pod_container_name": container.name,
            "__meta_kubernetes_pod_container_image": container.image or "",
            "__meta_kubernetes_pod_container_init": "false",
            "__meta_kubernetes_pod_container_port_name": port.name or "",
            "__meta_kubernetes_pod_container_port_number": str(port.container_port),
            "__meta_kubernetes_pod_container_port_protocol": port.protocol or "TCP"}


def pod_targets(core: kubernetes.client.CoreV1Api, namespace: str) -> list[dict[str, Any]]:
    """Role `pod`: one target per declared container port of each pod that has an IP."""
    return [{"targets": [f"{pod.status.pod_ip}:{port.container_port}"],
             "labels": {**pod_meta(pod), **container_port_meta(container, port)}}
            for pod in core.list_namespaced_pod(namespace).items if pod.status.pod_ip
            for container in pod.spec.containers for port in container.ports or []]


def endpoints_targets(core: kubernetes.client.CoreV1Api, namespace: str) -> list[dict[str, Any]]:
    """Role `endpoints`: one target per Service port and pod the Service selects, with both's labels.

    The addresses are the ones kube-controller-manager's endpoints controller would write (the selected pods,
    each Service port's targetPort resolved by name or number), computed here because the API server refuses
    the test pods' loopback IPs in Endpoints ("may not be in the loopback range (127.0.0.0/8, ::1/128)").
    """
    pods = [p for p in core.list_namespaced_pod(namespace).items if p.status.pod_ip]
    groups = []
    for service in core.list_namespaced_service(namespace).items:
        selector = service.spec.selector or {}
        base = {"__meta_kubernetes_namespace": namespace,
                "__meta_kubernetes_endpoints_name": service.metadata.name,
                "__meta_kubernetes_service_name": service.metadata.name,
                **object_labels("__meta_kubernetes_service", service.metadata)}
        for pod in pods:
            if not selector or not selector.items() <= (pod.metadata.labels or {}).items():
                continue
            for service_port in service.spec.ports or []:
                target = service_port.target_port or service_port.port
                found = next(((c, p) for c in pod.spec.containers for p in c.ports or []
                              if target in (p.name, p.container_port)), None)
                if found is None:
                    continue
                labels = {**base, **pod_meta(pod), **container_port_meta(*found),
                          "__meta_kubernetes_endpoint_ready": pod_meta(pod)["__meta_kubernetes_pod_ready"],
                          "__meta_kubernetes_endpoint_port_name": service_port.name or "",
                          "__meta_kubernetes_endpoint_port_protocol": service_port.protocol or "TCP",
                          "__meta_kubernetes_endpoint_address_target_kind": "Pod",
                          "__meta_kubernetes_endpoint_address_target_name": pod.metadata.name}
                groups.append({"targets": [f"{pod.status.pod_ip}:{found[1].container_port}"], "labels": labels})
    return groups


ROLES = {"pod": pod_targets, "endpoints": endpoints_targets}


class KubernetesTargets:
    """Keeps each discovery's file_sd file listing what Kubernetes discovery would find (see the module doc)."""

    def __init__(self, api: kubernetes.client.ApiClient, discoveries: list[dict[str, Any]]) -> None:
        unknown = {d["role"] for d in discoveries} - set(ROLES)
        assert not unknown, f"the generated config uses discovery roles {unknown}; only {set(ROLES)} are fed"
        assert all(d["namespaces"] for d in discoveries), f"discovery in all namespaces: {discoveries}"
        self.core = kubernetes.client.CoreV1Api(api)
        self.discoveries = discoveries
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubernetes-targets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for discovery in self.discoveries:
                groups = [group for namespace in discovery["namespaces"]
                          for group in ROLES[discovery["role"]](self.core, namespace)]
                partial = discovery["file"].with_suffix(".partial")
                partial.write_text(json.dumps(groups))
                os.replace(partial, discovery["file"])
