"""The test node agent's stand-in for cluster DNS (CoreDNS) and the kubelet's per-pod /etc/hosts and hostname.

On a real cluster a pod resolves its own hostname through the /etc/hosts the kubelet writes, and the names
of headless Services (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc[.cluster.local]`) and of pods with a
`hostname` + `subdomain` through CoreDNS. Distributed training depends on it: a PyTorchJob's workers reach
`MASTER_ADDR=<job>-master-0`, the name of the headless Service the training-operator creates for the
master pod. Here each pod process runs in its own mount namespace with a hosts file of the agent's bind-
mounted over /etc/hosts (`unshare` + `mount --bind`, so root is needed), and the agent rewrites that file
in place as Services and pod IPs appear. Each pod also gets its own UTS namespace whose hostname is the
pod's (`spec.hostname` or its name), as the kubelet gives it: gloo binds to the address the process's
hostname resolves to, so a PyTorchJob replica listens on its pod IP, as on a cluster, not on the
machine's loopback. Only names that resolve to pod IPs are served (there is no kube-proxy, so a ClusterIP
would not answer anyway); without root the pods keep the machine's /etc/hosts and hostname.
"""

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import kubernetes
import urllib3

log = logging.getLogger("node-agent.dns")
CLUSTER_DOMAIN = "cluster.local"
HOSTS_FILE = "hosts"
# Runs in the pod's new mount and UTS namespaces: put the pod's hosts file over /etc/hosts, set the pod's
# hostname ($1), then become the command.
_BIND_AND_EXEC = 'mount --bind "$0" /etc/hosts && hostname "$1" && shift && exec "$@"'


def service_names(service: str, namespace: str) -> list[str]:
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}",
    ]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def pod_hostname(pod: dict) -> str:
    """The hostname the kubelet gives the pod: spec.hostname, else the pod's name (at most 63 characters)."""
    return pod["spec"].get("hostname") or pod["metadata"]["name"][:63].rstrip("-.")


def hosts_text(pod: dict, services: Iterable[dict], pods: Iterable[dict]) -> str:
    """/etc/hosts for ``pod``: localhost, its own names, and the headless Services of its namespace."""
    meta, spec = pod["metadata"], pod["spec"]
    namespace = meta["namespace"]
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    own_ip = (pod.get("status") or {}).get("podIP")
    if own_ip:
        hostname = pod_hostname(pod)
        names = [hostname]
        if spec.get("subdomain"):
            names.insert(0, f"{hostname}.{spec['subdomain']}.{namespace}.svc.{CLUSTER_DOMAIN}")
        lines.append(f"{own_ip}\t{' '.join(names)}")
    pods = list(pods)
    for service in services:
        svc_spec = service.get("spec") or {}
        if svc_spec.get("clusterIP") != "None":
            continue
        name = service["metadata"]["name"]
        for other in pods:
            ip = (other.get("status") or {}).get("podIP")
            if ip and matches(svc_spec.get("selector") or {}, other["metadata"].get("labels") or {}):
                lines.append(f"{ip}\t{' '.join(service_names(name, namespace))}")
                other_spec = other["spec"]
                if other_spec.get("subdomain") == name and other_spec.get("hostname"):
                    # `<hostname>.<subdomain>` and the longer forms the pod's resolv.conf search path completes
                    member = f"{other_spec['hostname']}.{name}"
                    lines.append(f"{ip}\t{' '.join(service_names(member, namespace))}")
    return "\n".join(lines) + "\n"


class PodDns:
    """Writes each running pod's hosts file and wraps its command so the file is its /etc/hosts."""

    def __init__(self, api: kubernetes.client.ApiClient):
        self.api = api
        self.enabled = os.geteuid() == 0 and shutil.which("unshare") is not None
        if not self.enabled:
            log.warning("not root or no unshare: pods resolve names through the machine's /etc/hosts only")

    def wrap(self, pod: dict, pod_dir: Path, argv: list[str], env: dict[str, str]) -> list[str]:
        """``argv`` run with the pod's hosts file as /etc/hosts and the pod's hostname.

        Unchanged when the stand-in is off, or when the command is not found (so that starting it fails
        as before, with the agent's "cannot run" message, not inside the wrapper).
        """
        if not self.enabled or shutil.which(argv[0], path=env.get("PATH")) is None:
            return argv
        hosts = pod_dir / HOSTS_FILE
        write_in_place(hosts, hosts_text(pod, *self.namespace_objects(pod["metadata"]["namespace"])))
        return [
            "unshare", "--mount", "--uts", "--propagation", "private",
            "sh", "-c", _BIND_AND_EXEC, str(hosts), pod_hostname(pod), *argv,
        ]  # fmt: skip

    def refresh(self, running: Iterable[tuple[dict, Path]]) -> None:
        """Rewrite the hosts file of each (pod, pod_dir) for the Services and pod IPs there are now."""
        if not self.enabled:
            return
        listed: dict[str, tuple[list[dict], list[dict]]] = {}
        for pod, pod_dir in running:
            namespace = pod["metadata"]["namespace"]
            try:
                if namespace not in listed:
                    listed[namespace] = self.namespace_objects(namespace)
            except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError) as error:
                log.debug("hosts of %s not refreshed: %s", namespace, error)  # next sync tries again
                continue
            if (pod_dir / HOSTS_FILE).exists():
                write_in_place(pod_dir / HOSTS_FILE, hosts_text(pod, *listed[namespace]))

    def namespace_objects(self, namespace: str) -> tuple[list[dict], list[dict]]:
        """The Services and pods of ``namespace``, as dicts."""
        core = kubernetes.client.CoreV1Api(self.api)
        services = self.api.sanitize_for_serialization(core.list_namespaced_service(namespace).items)
        pods = self.api.sanitize_for_serialization(core.list_namespaced_pod(namespace).items)
        return services, pods


def write_in_place(hosts: Path, text: str) -> None:
    """Replace the file's content in place, not by rename: a running pod's bind mount holds its inode."""
    if hosts.exists() and hosts.read_text() == text:
        return
    with open(hosts, "r+" if hosts.exists() else "w") as f:
        f.write(text)
        f.truncate()
