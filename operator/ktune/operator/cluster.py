"""The few Kubernetes API calls the operator makes, as plain JSON dicts (the reconcile pass is tested with a fake).

Built on the `kubernetes` client's configuration and connection pool (kubeconfig or in-cluster
ServiceAccount) but speaking raw JSON, so objects look exactly as `kubectl get -o json` shows them.
"""

import json
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client, config

from ktune import contract

JOBS = f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/namespaces/{{ns}}/{contract.TUNINGJOB_PLURAL}"
TRIALS = f"/apis/{contract.API_GROUP}/{contract.API_VERSION}/namespaces/{{ns}}/{contract.TRIAL_PLURAL}"
PODS = "/api/v1/namespaces/{ns}/pods"
EVENTS = "/api/v1/namespaces/{ns}/events"
EVENT_SOURCE = "ktune-operator"
DISCOVERY_SECONDS = 60.0  # how long a served API group version is taken to stay served
LIST_PAGE_SIZE = 500  # objects per LIST page: a job with thousands of trials is read in bounded chunks

log = logging.getLogger(__name__)


class ApiError(Exception):
    """The API server refused a request; `status` is the HTTP status (409 = already exists, 404 = not found)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class AlreadyExists(ApiError):
    """A create was refused because an object of that name exists (409)."""


class Conflict(ApiError):
    """A write was refused because the object changed since the writer read it (409 on its resourceVersion):
    someone else wrote it, so what this process knows of it is stale; rebuild from the API."""


@dataclass(frozen=True)
class ApiResource:
    """A namespaced kind of the API by its version and plural name: `batch/v1` `jobs`, `kubeflow.org/v1`
    `pytorchjobs`."""

    api_version: str
    plural: str

    @property
    def group(self) -> str:
        """The API group ("" for the core group of `v1`)."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def path(self, namespace: str) -> str:
        """The collection's URL path in `namespace`."""
        root = "/api" if not self.group else "/apis"
        return f"{root}/{self.api_version}/namespaces/{namespace}/{self.plural}"


class WriteGate(Protocol):
    """Whether this process may write to the API now (`ktune.operator.election.LeaderGate`)."""

    def check(self, what: str) -> float:
        """The seconds this process may still write; raises when it may not write at all."""
        ...


class TooManyRequests(ApiError):
    """The API server asks to slow down (429); `retry_after` is how long it asked to wait, in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(429, message)
        self.retry_after = retry_after


class Cluster(Protocol):
    """What one reconcile pass needs from the API server (implemented by `KubeCluster` and a test fake)."""

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list_trials(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]: ...
    def create_trial(self, namespace: str, trial: Mapping[str, Any]) -> dict[str, Any]: ...
    def patch_trial_status(self, namespace: str, name: str, status: Mapping[str, Any],
                           resource_version: str | None = None) -> dict[str, Any]: ...
    def list_pods(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]: ...
    def create_pod(self, namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None: ...
    def patch_job_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...
    def emit_event(self, regarding: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...
    def read_pod_log(self, namespace: str, name: str, query: Mapping[str, str], timeout: float) -> str: ...
    def served_resources(self, api_version: str) -> frozenset[str]: ...
    def list_trial_resources(self, namespace: str, resource: ApiResource, tuningjob: str) -> list[dict[str, Any]]: ...
    def create_trial_resource(self, namespace: str, resource: ApiResource,
                              manifest: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_trial_resource(self, namespace: str, resource: ApiResource, name: str) -> None: ...


def _seconds(retry_after: str | None) -> float:
    """A Retry-After header in seconds (1 when absent or not a number of seconds, as the API server sends it)."""
    try:
        return max(0.0, float(retry_after)) if retry_after is not None else 1.0
    except ValueError:
        return 1.0


def job_selector(tuningjob: str) -> str:
    """The label selector of everything ktune made for one job."""
    return f"{contract.LABEL_TUNINGJOB}={tuningjob}"


class KubeCluster:
    """`Cluster` over a real API server.

    With leader election, `gate` is the leader's `LeaderGate`: every write (any method but GET) checks it right
    before it is sent, and is refused once this process may no longer be the leader, or given at most the time
    it may still write as its timeout.
    """

    def __init__(self, api_client: client.ApiClient, request_timeout: float = 30.0,
                 page_size: int = LIST_PAGE_SIZE) -> None:
        self._client = api_client
        self._timeout = request_timeout
        self._page_size = page_size
        self._instance = os.environ.get("HOSTNAME") or socket.gethostname()
        self._served: dict[str, tuple[float, frozenset[str]]] = {}  # api_version -> (when read, plurals)
        self.gate: WriteGate | None = None

    @classmethod
    def from_environment(cls, pool_size: int = 4) -> "KubeCluster":
        """In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config (as kubectl)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        configuration.connection_pool_maxsize = pool_size  # one connection per concurrent reconcile pass
        # No retries inside the HTTP client: a request retried after its timeout could reach the API server after
        # this process's leader Lease ran out. A failed call fails its pass (or its Lease renewal), which retry.
        configuration.retries = False
        return cls(client.ApiClient(configuration))

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        *,
        timeout: float | None = None,
        gated: bool = True,
    ) -> dict[str, Any]:
        """One API call; the decoded JSON answer, or ApiError with the server's message.

        A write (unless not `gated`: the leader Lease's own calls) passes `gate` first; `timeout` replaces the
        client's usual one."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        limit = self._timeout if timeout is None else timeout
        method, url, headers, body, _ = self._client.param_serialize(
            method,
            path,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        if gated and method != "GET" and self.gate is not None:
            limit = min(limit, self.gate.check(f"{method} {path}"))
        response = self._client.call_api(method, url, headers, body, _request_timeout=limit)
        text = (response.read() or b"{}").decode("utf-8")
        if not 200 <= response.status <= 299:
            try:
                message = json.loads(text).get("message", text)
            except json.JSONDecodeError:
                message = text
            if response.status == 429:
                raise TooManyRequests(message, _seconds(response.getheader("Retry-After")))
            error_type = ApiError
            if response.status == 409:
                error_type = AlreadyExists if method == "POST" else Conflict
            raise error_type(response.status, message)
        return json.loads(text)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A TuningJob, or None when there is none of that name."""
        try:
            return self.request("GET", f"{JOBS.format(ns=namespace)}/{name}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list_all(self, path: str, label_selector: str) -> list[dict[str, Any]]:
        """Every object a LIST returns, page by page; an expired continue token (410) starts over once."""
        for _ in range(2):
            items: list[dict[str, Any]] = []
            token = ""
            try:
                while True:
                    query = {"labelSelector": label_selector, "limit": str(self._page_size)}
                    if token:
                        query["continue"] = token
                    answer = self.request("GET", path, query)
                    items += answer["items"]
                    token = (answer.get("metadata") or {}).get("continue") or ""
                    if not token:
                        return items
            except ApiError as error:
                if error.status != 410 or not token:
                    raise
        raise ApiError(410, f"the list of {path} kept changing faster than it could be read")

    def list_trials(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]:
        return self.list_all(TRIALS.format(ns=namespace), job_selector(tuningjob))

    def create_trial(self, namespace: str, trial: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", TRIALS.format(ns=namespace), body=dict(trial))

    def patch_trial_status(self, namespace: str, name: str, status: Mapping[str, Any],
                           resource_version: str | None = None) -> dict[str, Any]:
        """Merge `status` into the Trial's; with `resource_version`, only if the Trial is still at that version
        (Conflict otherwise: a stale writer's patch is refused). The Trial as written."""
        path = f"{TRIALS.format(ns=namespace)}/{name}/status"
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def list_pods(self, namespace: str, tuningjob: str) -> list[dict[str, Any]]:
        return self.list_all(PODS.format(ns=namespace), job_selector(tuningjob))

    def create_pod(self, namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", PODS.format(ns=namespace), body=dict(pod))

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        """Delete a pod (404 is fine); `grace_seconds=0` removes it at once, even when no node confirms."""
        query = {"gracePeriodSeconds": str(grace_seconds)} if grace_seconds is not None else None
        try:
            self.request("DELETE", f"{PODS.format(ns=namespace)}/{name}", query)
        except ApiError as error:
            if error.status != 404:
                raise

    def served_resources(self, api_version: str) -> frozenset[str]:
        """The plurals the API server serves in `api_version` (API discovery; empty when it serves no such group
        version). Every authenticated user may read discovery (the `system:discovery` ClusterRole), so this needs no
        rule of the operator's own. A served version is remembered for DISCOVERY_SECONDS: a job checks its trial
        kind at every pass."""
        now = time.monotonic()
        cached = self._served.get(api_version)
        if cached is not None and now - cached[0] < DISCOVERY_SECONDS:
            return cached[1]
        root = "/api" if "/" not in api_version else "/apis"
        try:
            answer = self.request("GET", f"{root}/{api_version}")
        except ApiError as error:
            if error.status == 404:
                return frozenset()
            raise
        plurals = frozenset(entry["name"] for entry in answer.get("resources") or [] if "/" not in entry["name"])
        if plurals:
            self._served[api_version] = (now, plurals)
        return plurals

    def list_trial_resources(self, namespace: str, resource: ApiResource, tuningjob: str) -> list[dict[str, Any]]:
        """The job's trial resources of one kind (`spec.trial.resource`: Jobs, PyTorchJobs, ...)."""
        return self.list_all(resource.path(namespace), job_selector(tuningjob))

    def create_trial_resource(self, namespace: str, resource: ApiResource,
                              manifest: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", resource.path(namespace), body=dict(manifest))

    def delete_trial_resource(self, namespace: str, resource: ApiResource, name: str) -> None:
        """Delete a trial's resource with foreground propagation (404 is fine): it stays, Terminating, until every
        pod of it is gone, so a stopped trial's GPUs are all free once the resource is."""
        try:
            self.request("DELETE", f"{resource.path(namespace)}/{name}", {"propagationPolicy": "Foreground"})
        except ApiError as error:
            if error.status != 404:
                raise

    def patch_job_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        path = f"{JOBS.format(ns=namespace)}/{name}/status"
        self.request("PATCH", path, body={"status": dict(status)}, content_type="application/merge-patch+json")

    def read_pod_log(self, namespace: str, name: str, query: Mapping[str, str], timeout: float) -> str:
        """A pod's log through `pods/log` (the API server fetches it from the pod's node) as text, within `timeout`;
        ApiError with the server's message otherwise."""
        path = f"{PODS.format(ns=namespace)}/{name}/log?" + urllib.parse.urlencode(query)
        method, url, headers, _, _ = self._client.param_serialize(
            "GET", path, header_params={"Accept": "text/plain, application/json"}, auth_settings=["BearerToken"])
        response = self._client.call_api(method, url, headers, None, _request_timeout=timeout)
        text = (response.read() or b"").decode("utf-8", errors="replace")
        if not 200 <= response.status <= 299:
            try:
                message = json.loads(text).get("message", text)
            except (json.JSONDecodeError, AttributeError):
                message = text
            raise ApiError(response.status, str(message)[:500])
        return text

    def emit_event(self, regarding: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an Event; best effort: an Event the API refuses (429, quota) is logged, never fails the pass."""
        metadata = regarding["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": regarding["apiVersion"],
                "kind": regarding["kind"],
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": f"{contract.API_GROUP}/operator",
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.request("POST", EVENTS.format(ns=metadata["namespace"]), body=event)
        except ApiError as error:
            log.warning("%s/%s: event %s not recorded: %s", metadata["namespace"], metadata["name"], reason, error)
