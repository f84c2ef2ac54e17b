"""An in-process stand-in for the API server: just enough of `Cluster` for fast reconcile tests."""

import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from ktune import contract
from ktune.operator.cluster import AlreadyExists, ApiError, Conflict


class FakeCluster:
    """Objects live in dicts keyed by name; tests move pods along by editing their status."""

    def __init__(self) -> None:
        self.trials: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.deleted_pods: list[str] = []
        self.job_status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name) -> other TuningJobs
        self.pod_lists = 0  # LIST requests for pods
        self._uids = itertools.count()
        self._versions = itertools.count(1)  # resourceVersions of Trials

    def _uid(self) -> str:
        return f"uid-{next(self._uids)}"

    def touch_trial(self, name: str) -> None:
        """Give the Trial a new resourceVersion, as any write by someone else would."""
        self.trials[name]["metadata"]["resourceVersion"] = str(next(self._versions))

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.jobs.get((namespace, name)))

    def list_trials(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(t) for t in self.trials.values()
                if t["metadata"]["labels"][contract.LABEL_TUNINGJOB] == tuningjob]

    def create_trial(self, namespace: str, trial: Mapping[str, Any]) -> dict[str, Any]:
        name = trial["metadata"]["name"]
        if name in self.trials:
            raise AlreadyExists(409, f"trials {name} already exists")
        created = copy.deepcopy(dict(trial))
        created["metadata"]["uid"] = self._uid()
        created.pop("status", None)
        self.trials[name] = created
        self.touch_trial(name)
        return copy.deepcopy(created)

    def patch_trial_status(self, namespace: str, name: str, status: Mapping[str, Any],
                           resource_version: str | None = None) -> dict[str, Any]:
        if name not in self.trials:
            raise ApiError(404, f'trials.ktune.dev "{name}" not found')
        if resource_version is not None and resource_version != self.trials[name]["metadata"].get("resourceVersion"):
            raise Conflict(409, f'Operation cannot be fulfilled on trials.ktune.dev "{name}": the object has been '
                                "modified; please apply your changes to the latest version and try again")
        current = self.trials[name].setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = copy.deepcopy(value)
        self.touch_trial(name)
        return copy.deepcopy(self.trials[name])

    def list_pods(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]:
        self.pod_lists += 1
        return [copy.deepcopy(p) for p in self.pods.values()
                if p["metadata"]["labels"][contract.LABEL_TUNINGJOB] == tuningjob]

    def create_pod(self, namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]:
        name = pod["metadata"]["name"]
        if name in self.pods:
            raise AlreadyExists(409, f"pods {name} already exists")
        created = copy.deepcopy(dict(pod))
        created["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        created["status"] = {"phase": "Pending"}
        self.pods[name] = created
        return copy.deepcopy(created)

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        if self.pods.pop(name, None) is not None:
            self.deleted_pods.append(name)

    def patch_job_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        for key, value in status.items():
            if value is None:
                self.job_status.pop(key, None)
            else:
                self.job_status[key] = copy.deepcopy(value)

    def emit_event(self, regarding: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    # ---- what the kubelet would do ----

    def run_pod(self, name: str, ip: str = "10.0.0.1") -> None:
        self.pods[name]["status"] = {"phase": "Running", "podIP": ip}

    def finish_pod(self, name: str, message: str, exit_code: int = 0, reason: str = "Completed") -> None:
        container = self.pods[name]["spec"]["containers"][0]["name"]
        self.pods[name]["status"] = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"name": container, "state": {"terminated": {
                "exitCode": exit_code, "reason": reason, "message": message}}}],
        }


class LaggingPodIndex(Mapping[tuple[str, str], list[dict[str, Any]]]):
    """What the operator's pod watch (kopf's index) holds: the fake's pods as of the last `catch_up()`,
    keyed by (namespace, tuningjob) as handlers.py keys them."""

    def __init__(self, cluster: FakeCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._pods: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def catch_up(self) -> None:
        """Deliver every pending pod event."""
        self._pods = {}
        for pod in self.cluster.pods.values():
            key = (self.namespace, pod["metadata"]["labels"][contract.LABEL_TUNINGJOB])
            self._pods.setdefault(key, []).append(copy.deepcopy(pod))

    def __getitem__(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        return self._pods[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pods)

    def __len__(self) -> int:
        return len(self._pods)
