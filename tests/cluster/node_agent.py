"""A test node agent: a Node that runs pods' first containers as local processes. IMAGES ARE IGNORED.

Run as `python -m tests.cluster.node_agent --kubeconfig K --node-name N --workdir D` (the `node_agent`
fixture does this as a subprocess, so a test can kill it to simulate losing the node). It:

- registers a Ready Node with capacity/allocatable cpu, memory, ephemeral-storage, pods and nvidia.com/gpu
  (ephemeral-storage as a kubelet reports its disk: Kubeflow's MPIJob launcher requests 5Gi), and keeps its
  Lease in kube-node-lease (and the Ready condition's heartbeat) fresh;
- binds Pending pods without a node through the Binding subresource when their requests fit (and their
  nodeSelector matches); a pod that does not fit gets PodScheduled=False/Unschedulable;
- runs each pod bound to it: the FIRST container's `command` + `args` (there is no image, so `command` is
  required and must exist on this machine), with Kubernetes `$(VAR)` expansion and `env` (values,
  `valueFrom.fieldRef`, `configMapKeyRef`, `secretKeyRef`). The process inherits the agent's environment
  (PATH starts with this Python's bin directory) under the pod's env; its working directory is the
  container's `workingDir` when it exists, else a per-pod directory;
- gives each pod a loopback address 127.<node>.x.y, written to status.podIP BEFORE its process starts so
  servers in the pod can bind there;
- maps ONLY the container's terminationMessagePath (default /dev/termination-log) to a per-pod file: the
  process finds that file's path in env KTUNE_RESULT_PATH (overriding any value from the pod spec, since
  no process can write /dev/termination-log). After the exit the file (or, with
  FallbackToLogsOnError and a failure, the log tail) becomes state.terminated.message (4096 bytes max);
- exit code 0 -> Succeeded/Completed; exit code 137 -> Failed/OOMKilled (how a test simulates OOM);
  any other failure -> Failed/Error (killed by signal N: exit code 128+N). restartPolicy Never is what
  ktune uses; OnFailure and Always restart the process with a short backoff;
- on pod deletion: SIGTERM the process group, SIGKILL after the grace period, then delete the pod with
  grace 0 as the kubelet does. Pod output goes to <workdir>/pods/<namespace>_<name>/container.log;
- serves the kubelet's containerLogs endpoint (tests.cluster.kubelet_logs), so `kubectl logs` and `pods/log` work.

Every API call is retried: watches reconnect with backoff, so the agent survives API server restarts.
"""

import argparse
import base64
import contextlib
import datetime
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from ktune.contract import ENV_RESULT_PATH
from ktune.local.expansion import expand, expand_env
from tests.cluster.kubelet_logs import ContainerLogServer, spawn_logged
from tests.cluster.pod_dns import PodDns

log = logging.getLogger("node-agent")

HEARTBEAT_SECONDS = 5.0
LEASE_DURATION_SECONDS = 40
RESYNC_SECONDS = 2.0
MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
OOM_EXIT_CODE = 137
DEFAULT_GRACE_SECONDS = 30
# kubernetes>=35 clients default PATCH to JSON Patch; dict bodies need an explicit merge patch type.
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
UNSCHEDULABLE = "no test node matches the pod's nodeSelector or has room for its requests"


class PodSpecError(ValueError):
    """The pod asks for something this agent cannot do; the pod fails with this message."""


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ('500m', '2Gi', '1') as a number of base units."""
    return float(kubernetes.utils.parse_quantity(str(value)))


def pod_key(pod: dict) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def pod_requests(pod: dict) -> dict[str, float]:
    """The pod's requests: sum over containers (limits stand in for missing requests), max with init containers."""
    total: dict[str, float] = {"pods": 1.0}
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, quantity in wanted.items():
            total[name] = total.get(name, 0.0) + parse_quantity(quantity)
    for container in pod["spec"].get("initContainers", []) or []:
        resources = container.get("resources") or {}
        for name, quantity in {**(resources.get("limits") or {}), **(resources.get("requests") or {})}.items():
            total[name] = max(total.get(name, 0.0), parse_quantity(quantity))
    return total


def field_value(pod: dict, path: str) -> str:
    """The value of a downward-API fieldRef path on ``pod``."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs") or []),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return simple[path]
    for prefix, mapping in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return (meta.get(mapping) or {}).get(path[len(prefix) + 2 : -2], "")
    raise PodSpecError(f"env valueFrom.fieldRef.fieldPath {path!r} is not supported by the test node agent")


@dataclass
class Running:
    """A pod process this agent started."""

    pod: dict
    process: subprocess.Popen
    pod_dir: Path
    started_at: str
    restart_count: int = 0
    kill_at: float | None = None
    killed: bool = False
    last_state: dict = field(default_factory=dict)


class NodeAgent:
    def __init__(
        self, api: kubernetes.client.ApiClient, node_name: str, workdir: Path, capacity: dict[str, str], ip_octet: int
    ):
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.coordination = kubernetes.client.CoordinationV1Api(api)
        self.node_name = node_name
        self.workdir = workdir
        self.capacity = capacity
        self.ip_octet = ip_octet
        self.pods: dict[str, dict] = {}  # uid -> latest pod as a dict
        self.running: dict[str, Running] = {}  # uid -> process
        self.finished: set[str] = set()  # uids whose final status this agent wrote
        self.restart_at: dict[str, float] = {}  # uid -> when to start it again (OnFailure/Always)
        self.events: queue.Queue = queue.Queue()
        self.next_ip = 0
        self.stopping = threading.Event()
        self.restarting: dict[str, Running] = {}  # uid -> the exited process a restart follows
        self.started = now_rfc3339()
        self.logs = ContainerLogServer(workdir, self.locate_container)
        self.dns = PodDns(api)

    # ---- node registration and heartbeats -------------------------------------------------------
    def node_object(self) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "ktune.dev/test-node-agent": "true",
                },
            },
            "spec": {},
        }

    def node_status(self) -> dict:
        stamp = now_rfc3339()

        def condition(kind: str, status: str, reason: str, message: str) -> dict:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self.started,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                condition("Ready", "True", "KubeletReady", "ktune test node agent is posting ready status"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs.port}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "",
                "containerRuntimeVersion": "ktune-node-agent://processes",
                "kernelVersion": os.uname().release,
                "kubeProxyVersion": "",
                "kubeletVersion": "v0.0.0-ktune-node-agent",
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "ktune test node agent (images ignored)",
                "systemUUID": "",
            },
        }

    def register(self) -> None:
        try:
            self.core.create_node(self.node_object())
        except ApiException as error:
            if error.status != 409:
                raise
        self.core.patch_node_status(self.node_name, {"status": self.node_status()}, _content_type=MERGE_PATCH)
        log.info("registered node %s with %s", self.node_name, self.capacity)

    def heartbeat(self) -> None:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": now_micro(),
            },
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node_name, "kube-node-lease", {"spec": lease["spec"]}, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", lease)
        try:
            self.core.patch_node_status(self.node_name, {"status": self.node_status()}, _content_type=MERGE_PATCH)
        except ApiException as error:
            if error.status != 404:
                raise
            self.register()

    def heartbeat_loop(self) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except Exception as error:  # keep beating through API server restarts
                log.warning("heartbeat failed: %s", error)

    # ---- watching pods ---------------------------------------------------------------------------
    def watch_loop(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                resource_version = self.relist()
                backoff = 0.5
                self.watch(resource_version)
            except Exception as error:  # reconnect on anything, as the kubelet does
                log.warning("pod watch interrupted (%s); reconnecting in %.1f s", error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def relist(self) -> str:
        answer = self.core.list_pod_for_all_namespaces(_preload_content=False, _request_timeout=30)
        listing = json.loads(answer.data)
        seen = {}
        for pod in listing["items"]:
            seen[pod["metadata"]["uid"]] = pod
        self.events.put(("relist", seen))
        return listing["metadata"]["resourceVersion"]

    def watch(self, resource_version: str) -> None:
        stream = kubernetes.watch.Watch().stream(
            self.core.list_pod_for_all_namespaces,
            resource_version=resource_version,
            timeout_seconds=60,
            _request_timeout=90,
            deserialize=False,
        )
        for event in stream:
            if self.stopping.is_set():
                return
            kind, obj = event["type"], event["object"]
            if kind == "BOOKMARK":
                continue
            self.events.put((kind, obj))

    # ---- the reconcile loop (one thread owns all pod state) --------------------------------------
    def reconcile_loop(self) -> None:
        next_sync = 0.0
        while not self.stopping.is_set():
            try:
                kind, payload = self.events.get(timeout=0.5)
            except queue.Empty:
                kind, payload = "tick", None
            try:
                self.handle(kind, payload)
                if time.monotonic() >= next_sync:
                    next_sync = time.monotonic() + RESYNC_SECONDS
                    self.sync_all()
                self.enforce_deadlines()
            except Exception:  # log, then retry on the next event or tick
                log.exception("reconcile failed for %s", kind)

    def handle(self, kind: str, payload: Any) -> None:
        if kind == "relist":
            for uid in set(self.pods) - set(payload):
                self.forget(uid)
            self.pods = payload
            return
        if kind == "exited":
            self.on_exit(payload)
            return
        if kind in ("ADDED", "MODIFIED"):
            uid = payload["metadata"]["uid"]
            self.pods[uid] = payload
            self.sync(payload)
        elif kind == "DELETED":
            self.forget(payload["metadata"]["uid"])

    def forget(self, uid: str) -> None:
        """The pod is gone from the API: kill what still runs for it."""
        self.pods.pop(uid, None)
        self.restart_at.pop(uid, None)
        running = self.running.pop(uid, None)
        if running is not None and running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)

    def sync_all(self) -> None:
        for pod in list(self.pods.values()):
            self.sync(pod)
        self.dns.refresh((r.pod, r.pod_dir) for r in self.running.values())

    def sync(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        node = pod["spec"].get("nodeName")
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if not node:
            if pod["metadata"].get("deletionTimestamp") is None and phase == "Pending":
                self.try_bind(pod)
            return
        if node != self.node_name:
            return
        if pod["metadata"].get("deletionTimestamp") is not None:
            self.terminate(pod)
            return
        if uid in self.running or uid in self.finished or uid in self.restart_at:
            return
        if phase in ("Succeeded", "Failed"):
            return
        if (pod.get("status") or {}).get("containerStatuses"):
            self.mark_lost(pod)
            return
        self.start(pod)

    # ---- scheduling ------------------------------------------------------------------------------
    def used(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pod in self.pods.values():
            phase = (pod.get("status") or {}).get("phase")
            if pod["spec"].get("nodeName") != self.node_name or phase in ("Succeeded", "Failed"):
                continue
            for name, amount in pod_requests(pod).items():
                used[name] = used.get(name, 0.0) + amount
        return used

    def misfit(self, pod: dict) -> str | None:
        """Why ``pod`` does not fit on this node, or None when it does."""
        labels = self.node_object()["metadata"]["labels"]
        selector = pod["spec"].get("nodeSelector") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            return UNSCHEDULABLE
        used = self.used()
        for name, amount in pod_requests(pod).items():
            available = parse_quantity(self.capacity.get(name, "0")) - used.get(name, 0.0)
            if amount > available:
                return UNSCHEDULABLE
        return None

    def try_bind(self, pod: dict) -> None:
        meta = pod["metadata"]
        if pod["spec"].get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        reason = self.misfit(pod)
        if reason is not None:
            self.mark_unschedulable(pod, reason)
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.core.create_namespaced_binding(meta["namespace"], binding, _preload_content=False)
        except ApiException as error:
            if error.status in (404, 409):
                return
            raise
        pod["spec"]["nodeName"] = self.node_name  # count it as used until the watch brings the update
        log.info("bound %s to %s", pod_key(pod), self.node_name)

    def mark_unschedulable(self, pod: dict, message: str) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "PodScheduled" and c.get("message") == message for c in conditions):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": now_rfc3339(),
        }
        self.patch_status(pod, {"conditions": [condition]})

    # ---- running pods ----------------------------------------------------------------------------
    def allocate_ip(self) -> str:
        self.next_ip += 1
        return f"127.{self.ip_octet}.{self.next_ip // 250}.{self.next_ip % 250 + 1}"

    def locate_container(self, namespace: str, name: str, container: str) -> Path | None:
        """The files of a pod this node runs or ran, when `container` is its first (the one that runs)."""
        for pod in list(self.pods.values()):
            meta = pod["metadata"]
            if (meta["namespace"], meta["name"]) == (namespace, name) and pod["spec"].get("nodeName") == self.node_name:
                return self.pod_dir(pod) if pod["spec"]["containers"][0]["name"] == container else None
        return None

    def pod_dir(self, pod: dict) -> Path:
        meta = pod["metadata"]
        return self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"

    def start(self, pod: dict, restart_count: int = 0, last_state: dict | None = None) -> None:
        uid = pod["metadata"]["uid"]
        container = pod["spec"]["containers"][0]
        status = pod.get("status") or {}
        if not status.get("podIP"):
            ip = self.allocate_ip()
            status = {
                **status,
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "startTime": status.get("startTime") or now_rfc3339(),
            }
            pod["status"] = status
            self.patch_status(
                pod,
                {
                    "phase": "Pending",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "hostIP": "127.0.0.1",
                    "hostIPs": [{"ip": "127.0.0.1"}],
                    "startTime": status["startTime"],
                    "conditions": self.conditions(ready=False, reason="ContainersNotReady"),
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container.get("image", ""),
                            "imageID": "",
                            "ready": False,
                            "restartCount": restart_count,
                            "started": False,
                            "state": {"waiting": {"reason": "ContainerCreating"}},
                        }
                    ],
                },
            )
        pod_dir = self.pod_dir(pod)
        pod_dir.mkdir(parents=True, exist_ok=True)
        result_file = pod_dir / "termination-log"
        result_file.write_text("")
        try:
            argv, env = self.command_and_env(pod, container, result_file)
        except PodSpecError as error:
            self.fail_unstartable(pod, str(error))
            return
        workdir = Path(container["workingDir"]) if container.get("workingDir") else pod_dir
        if not workdir.is_dir():
            workdir = pod_dir
        argv = self.dns.wrap(pod, pod_dir, argv, env)
        try:
            process, drained = spawn_logged(argv, pod_dir, env=env, cwd=workdir)
        except OSError as error:
            self.fail_unstartable(pod, f"cannot run {argv[0]!r}: {error} (the test node agent ignores images)")
            return
        started_at = now_rfc3339()
        self.running[uid] = Running(pod, process, pod_dir, started_at, restart_count, last_state=last_state or {})
        threading.Thread(target=self.wait_for, args=(uid, process, drained), daemon=True).start()
        log.info("started %s as pid %d: %s", pod_key(pod), process.pid, argv)
        container_status = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": f"ktune://{process.pid}",
            "ready": True,
            "started": True,
            "restartCount": restart_count,
            "state": {"running": {"startedAt": started_at}},
        }
        if last_state:
            container_status["lastState"] = last_state
        self.patch_status(
            pod,
            {
                "phase": "Running",
                "conditions": self.conditions(ready=True),
                "containerStatuses": [container_status],
            },
        )

    def command_and_env(self, pod: dict, container: dict, result_file: Path) -> tuple[list[str], dict[str, str]]:
        if not container.get("command"):
            raise PodSpecError(
                f"container {container['name']!r} has no command: the test node agent ignores images "
                "(image entrypoints are unknown), so set spec.containers[0].command"
            )
        pairs = [(entry["name"], self.env_value(pod, entry)) for entry in container.get("env") or []]
        resolved = expand_env(pairs)
        resolved[ENV_RESULT_PATH] = str(result_file)
        argv = [expand(part, resolved) for part in [*container["command"], *(container.get("args") or [])]]
        env = {**os.environ, **resolved}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{resolved.get('PATH', os.environ.get('PATH', ''))}"
        env["HOSTNAME"] = pod["metadata"]["name"]
        return argv, env

    def env_value(self, pod: dict, entry: dict) -> str:
        source = entry.get("valueFrom")
        if source is None:
            return entry.get("value", "")
        namespace = pod["metadata"]["namespace"]
        if "fieldRef" in source:
            return field_value(pod, source["fieldRef"]["fieldPath"])
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = self.core.read_namespaced_config_map(ref["name"], namespace).data or {}
            return self.keyed(data, ref, "ConfigMap", entry["name"])
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = self.core.read_namespaced_secret(ref["name"], namespace).data or {}
            return base64.b64decode(self.keyed(data, ref, "Secret", entry["name"])).decode()
        raise PodSpecError(f"env {entry['name']}: valueFrom {sorted(source)} is not supported by the test node agent")

    @staticmethod
    def keyed(data: dict, ref: dict, kind: str, env_name: str) -> str:
        if ref["key"] not in data:
            raise PodSpecError(f"env {env_name}: {kind} {ref['name']} has no key {ref['key']!r}")
        return data[ref["key"]]

    def wait_for(self, uid: str, process: subprocess.Popen, drained: Any) -> None:
        process.wait()
        drained()  # the container's last lines are in its log before its end is reported, as with a kubelet
        self.events.put(("exited", (uid, process)))

    def on_exit(self, payload: tuple[str, subprocess.Popen]) -> None:
        uid, process = payload
        running = self.running.get(uid)
        if running is None or running.process is not process:
            return
        del self.running[uid]
        pod = self.pods.get(uid, running.pod)
        container = pod["spec"]["containers"][0]
        code = process.returncode if process.returncode >= 0 else 128 - process.returncode
        if process.returncode == 0:
            reason = "Completed"
        elif process.returncode == OOM_EXIT_CODE:
            reason = "OOMKilled"
        else:
            reason = "Error"
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": running.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": f"ktune://{process.pid}",
        }
        message = self.termination_message(container, running.pod_dir, code)
        if message:
            terminated["message"] = message
        policy = pod["spec"].get("restartPolicy", "Always")
        deleting = pod["metadata"].get("deletionTimestamp") is not None
        restart = not deleting and (policy == "Always" or (policy == "OnFailure" and code != 0))
        log.info("%s exited with %d (%s)%s", pod_key(pod), code, reason, "; restarting" if restart else "")
        if restart:
            self.restart_at[uid] = time.monotonic() + min(2.0**running.restart_count, 10.0)
            running.last_state = {"terminated": terminated}
            self.restarting[uid] = running
            self.patch_status(pod, {"conditions": self.conditions(ready=False, reason="ContainersNotReady")})
            return
        self.finished.add(uid)
        phase = "Succeeded" if code == 0 and policy != "Always" else "Failed"
        container_status = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": terminated["containerID"],
            "ready": False,
            "started": False,
            "restartCount": running.restart_count,
            "state": {"terminated": terminated},
        }
        if running.last_state:
            container_status["lastState"] = running.last_state
        final = {
            "phase": phase,
            "conditions": self.conditions(ready=False, reason="PodCompleted"),
            "containerStatuses": [container_status],
        }
        try:
            self.patch_status(pod, final)
        except Exception:
            # The API server is away (restarting): keep reporting, as the kubelet's status manager does.
            log.warning("%s: final status not written; retrying", pod_key(pod))
            threading.Thread(target=self.patch_until_written, args=(pod, final), daemon=True).start()
        if deleting:
            self.delete_now(pod)

    def patch_until_written(self, pod: dict, status: dict) -> None:
        while not self.stopping.is_set():
            time.sleep(1.0)
            try:
                self.patch_status(pod, status)
                return
            except Exception as error:
                log.warning("%s: final status still not written (%s)", pod_key(pod), error)

    @staticmethod
    def termination_message(container: dict, pod_dir: Path, exit_code: int) -> str:
        path = pod_dir / "termination-log"
        message = path.read_bytes()[-MAX_MESSAGE_BYTES:] if path.exists() else b""
        fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not message.strip() and fallback and exit_code != 0:
            lines = (pod_dir / "container.log").read_bytes().splitlines()[-FALLBACK_LOG_LINES:]
            message = b"\n".join(lines)[-MAX_MESSAGE_BYTES:]
        return message.decode(errors="replace")

    def fail_unstartable(self, pod: dict, message: str) -> None:
        """The pod cannot run here: it fails at once with the reason in its status."""
        uid = pod["metadata"]["uid"]
        self.finished.add(uid)
        container = pod["spec"]["containers"][0]
        log.warning("%s cannot start: %s", pod_key(pod), message)
        stamp = now_rfc3339()
        terminated = {
            "exitCode": 128,
            "reason": "StartError",
            "message": message,
            "startedAt": stamp,
            "finishedAt": stamp,
        }
        self.patch_status(
            pod,
            {
                "phase": "Failed",
                "message": message,
                "reason": "StartError",
                "conditions": self.conditions(ready=False, reason="PodCompleted"),
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            },
        )

    def mark_lost(self, pod: dict) -> None:
        """A pod that ran here before this agent (re)started: its process is gone, as after a node reboot."""
        self.finished.add(pod["metadata"]["uid"])
        container = pod["spec"]["containers"][0]
        stamp = now_rfc3339()
        self.patch_status(
            pod,
            {
                "phase": "Failed",
                "conditions": self.conditions(ready=False, reason="PodCompleted"),
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "terminated": {
                                "exitCode": 137,
                                "reason": "ContainerStatusUnknown",
                                "message": "The container could not be located when the pod was terminated",
                                "startedAt": stamp,
                                "finishedAt": stamp,
                            }
                        },
                    }
                ],
            },
        )

    # ---- deletion --------------------------------------------------------------------------------
    def terminate(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        self.restart_at.pop(uid, None)
        running = self.running.get(uid)
        if running is None:
            self.delete_now(pod)
            return
        if running.kill_at is None:
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
            running.pod = pod
            running.kill_at = time.monotonic() + grace
            log.info("terminating %s (grace %s s)", pod_key(pod), grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, signal.SIGTERM)

    def enforce_deadlines(self) -> None:
        now = time.monotonic()
        for running in list(self.running.values()):
            if running.kill_at is not None and now >= running.kill_at and not running.killed:
                running.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGKILL)
        for uid, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[uid]
                previous = self.restarting.pop(uid)
                pod = self.pods.get(uid)
                if pod is not None:
                    self.start(pod, previous.restart_count + 1, previous.last_state)

    def delete_now(self, pod: dict) -> None:
        meta = pod["metadata"]
        options = kubernetes.client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid=meta["uid"])
        )
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    # ---- status helpers --------------------------------------------------------------------------
    def conditions(self, ready: bool, reason: str | None = None) -> list[dict]:
        stamp = now_rfc3339()
        out = []
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            is_true = kind in ("PodScheduled", "Initialized") or ready
            condition = {"type": kind, "status": "True" if is_true else "False", "lastTransitionTime": stamp}
            if not is_true and reason:
                condition["reason"] = reason
            out.append(condition)
        return out

    def patch_status(self, pod: dict, status: dict) -> None:
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _content_type=STRATEGIC_MERGE_PATCH
            )
        except ApiException as error:
            if error.status != 404:
                raise

    # ---- lifecycle -------------------------------------------------------------------------------
    def run(self) -> None:
        self.logs.start()
        while True:
            try:
                self.register()
                break
            except Exception as error:  # the API server may still be starting
                log.warning("node registration failed (%s); retrying", error)
                time.sleep(1)
        self.heartbeat()
        for target in (self.heartbeat_loop, self.watch_loop):
            threading.Thread(target=target, daemon=True).start()
        self.reconcile_loop()

    def shutdown(self) -> None:
        """Stop: kill every pod process (the node goes away with them)."""
        self.stopping.set()
        for running in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--cpu", default="8")
    parser.add_argument("--memory", default="32Gi")
    parser.add_argument("--pods", default="110")
    parser.add_argument("--ephemeral-storage", default="100Gi")
    parser.add_argument("--gpus", default="0", help="nvidia.com/gpu capacity")
    parser.add_argument("--ip-octet", type=int, default=10, help="pod IPs are 127.<ip-octet>.x.y")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # connection retries while the API server restarts
    api = kubernetes.config.new_client_from_config(config_file=args.kubeconfig)
    capacity = {"cpu": args.cpu, "memory": args.memory, "ephemeral-storage": args.ephemeral_storage, "pods": args.pods,
                "nvidia.com/gpu": args.gpus}
    agent = NodeAgent(api, args.node_name, args.workdir, capacity, args.ip_octet)

    def stop(signum: int, _frame: Any) -> None:
        agent.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()


if __name__ == "__main__":
    main()
