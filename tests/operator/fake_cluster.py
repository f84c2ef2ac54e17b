"""An in-process stand-in for the API server: just enough of `Cluster` for fast reconcile tests."""

import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from ktune import contract
from ktune.operator.cluster import AlreadyExists, ApiError, ApiResource, Conflict


class FakeCluster:
    """Objects live in dicts keyed by name; tests move pods along by editing their status."""

    def __init__(self) -> None:
        self.trials: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.deleted_pods: list[str] = []
        self.job_status: dict[str, Any] = {}
        self.events: list[tuple[str, str, str]] = []
        self.trial_events: list[tuple[str, str, str, str]] = []
        """Events about Trials: (trial, type, reason, message); `events` holds those about the TuningJob."""
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name) -> other TuningJobs
        self.pod_lists = 0  # LIST requests for pods
        self.trial_resources: dict[str, dict[str, dict[str, Any]]] = {}  # plural -> name -> a Job, a PyTorchJob...
        self.deleted_resources: list[str] = []
        self.served: dict[str, set[str]] = {  # what discovery says the API server serves: api_version -> plurals
            "v1": {"services"}, "batch/v1": {"jobs"},
            "kubeflow.org/v1": {"pytorchjobs", "tfjobs", "mpijobs", "xgboostjobs"}}
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
        if regarding.get("kind") == contract.TRIAL_KIND:
            self.trial_events.append((regarding["metadata"]["name"], type_, reason, message))
        else:
            self.events.append((type_, reason, message))

    def served_resources(self, api_version: str) -> frozenset[str]:
        return frozenset(self.served.get(api_version, ()))

    def _served_or_404(self, resource: ApiResource) -> dict[str, dict[str, Any]]:
        if resource.plural not in self.served.get(resource.api_version, ()):
            raise ApiError(404, "the server could not find the requested resource")
        return self.trial_resources.setdefault(resource.plural, {})

    def list_trial_resources(self, namespace: str, resource: ApiResource, tuningjob: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj) for obj in self._served_or_404(resource).values()
                if obj["metadata"]["labels"][contract.LABEL_TUNINGJOB] == tuningjob]

    def create_trial_resource(self, namespace: str, resource: ApiResource,
                              manifest: Mapping[str, Any]) -> dict[str, Any]:
        objects = self._served_or_404(resource)
        name = manifest["metadata"]["name"]
        if name in objects:
            raise AlreadyExists(409, f"{resource.plural} {name} already exists")
        created = copy.deepcopy(dict(manifest))
        created["metadata"].update(uid=f"{resource.plural}-uid-{next(self._uids)}",
                                   creationTimestamp="2026-01-01T00:00:00Z")
        objects[name] = created
        return copy.deepcopy(created)

    def delete_trial_resource(self, namespace: str, resource: ApiResource, name: str) -> None:
        """Foreground: the resource stays, Terminating, until the test removes its pods (`collect`)."""
        objects = self._served_or_404(resource)
        if name in objects:
            objects[name]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:10Z"
            self.deleted_resources.append(name)

    def collect(self, plural: str, name: str) -> None:
        """The garbage collector: the resource's pods go, then the resource."""
        uid = self.trial_resources[plural][name]["metadata"]["uid"]
        for pod in [p for p, body in self.pods.items() if body["metadata"]["ownerReferences"][0]["uid"] == uid]:
            del self.pods[pod]
        del self.trial_resources[plural][name]

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
