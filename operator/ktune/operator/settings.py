"""The operator's settings: one typed dataclass, filled from `KTUNE_OPERATOR_*` environment variables."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

ENV_PREFIX = "KTUNE_OPERATOR_"


@dataclass(frozen=True)
class OperatorSettings:
    """How often and how patiently the operator reconciles; every field is `KTUNE_OPERATOR_<FIELD>` in env."""

    reconcile_interval_seconds: float = 2.0
    """Seconds a TuningJob waits for an event (a pod milestone, an edit) before its next reconcile pass anyway: the
    safety net for missed events, and the pace of reading running trials' metrics while no event comes."""

    scrape_timeout_seconds: float = 2.0
    """Timeout of one `/metrics` scrape or PromQL query; a slow trial never stalls its job longer."""

    image_pull_timeout_seconds: float = 300.0
    """How long a pod may wait with ImagePullBackOff/ErrImagePull before its attempt counts as failed."""

    unschedulable_timeout_seconds: float = 600.0
    """How long a pod may stay Unschedulable before its attempt counts as failed."""

    metrics_unavailable_timeout_seconds: float = 600.0
    """How long a running trial's metrics may go unanswered before its attempt fails with MetricsUnavailable."""

    lost_pod_timeout_seconds: float = 120.0
    """How long a deleted pod may stay Terminating past its grace period (its node is gone, nobody confirms
    the deletion) before the operator force-deletes it and the attempt fails with NodeLost."""

    intermediate_values_kept: int = 100
    """At most this many intermediate values are kept in a Trial's status (the latest ones)."""

    pareto_front_kept: int = 10
    """At most this many Pareto-optimal trials are listed in a multi-objective TuningJob's status."""

    lease_duration_seconds: float = 15.0
    """With leader election: a standby takes over this long after the leader's last renewal."""

    max_workers: int = 32
    """Threads for reconcile passes: how many TuningJobs can be reconciled at the same moment (a job waiting for
    an event holds none)."""

    forbid_privileged_trials: bool = False
    """Refuse (mark Invalid) TuningJobs whose trial template asks for the host or for root: privileged containers,
    hostPath volumes, hostNetwork/hostPID/hostIPC, hostPort, nodeName, runAsUser 0, allowPrivilegeEscalation,
    added capabilities, Unconfined seccomp or a non-default procMount (`ktune.operator.pod_policy`)."""

    delete_succeeded_pods: bool = True
    """Delete a trial's pod as soon as its success is recorded (the result lives in the Trial), so pods and the
    operator's pod index do not grow with every trial. false keeps them, e.g. to read their logs."""

    failed_pod_retention_seconds: float = 86400.0
    """How long the pod of a failed attempt is kept (for its logs) after it ended; then it is deleted."""

    allowed_prometheus_urls: str = ""
    """The Prometheus servers a TuningJob's `metricsSource.url` may name, comma-separated (e.g.
    `http://prometheus.monitoring:9090`). A job naming another URL is marked Invalid and nothing is fetched from
    it: otherwise any job author could make the operator request any address (cloud metadata, internal
    services). Empty: `metricsSource.type: prometheus` is refused."""

    cross_namespace_warm_start: bool = False
    """Let `spec.warmStart.from` name TuningJobs in other namespaces. The operator reads them with its own
    cluster-wide rights and cannot know who wrote the job, so turn this on only together with the admission policy
    (chart admissionPolicy.enabled), which refuses a job whose author may not get TuningJobs and list Trials in
    each source's namespace. Off: a job naming another namespace is marked Invalid and nothing is read there."""

    def allows_prometheus_url(self, url: str) -> bool:
        """Whether `url` is one of `allowed_prometheus_urls` (a trailing slash does not matter)."""
        allowed = {entry.strip().rstrip("/") for entry in self.allowed_prometheus_urls.split(",") if entry.strip()}
        return url.rstrip("/") in allowed

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "OperatorSettings":
        """Settings with every `KTUNE_OPERATOR_<FIELD>` variable applied; a bad value names the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # each value converted to its field's type below
        for spec in fields(cls):
            variable = ENV_PREFIX + spec.name.upper()
            if variable not in environ:
                continue
            if spec.type in (bool, "bool"):
                values[spec.name] = _boolean(variable, environ[variable])
                continue
            if spec.type in (str, "str"):
                values[spec.name] = environ[variable]
                continue
            convert = int if spec.type in (int, "int") else float
            try:
                value = convert(environ[variable])
            except ValueError:
                raise ValueError(
                    f"{variable}={environ[variable]!r} is not a number ({convert.__name__}); unset it or fix it"
                ) from None
            if value <= 0:
                raise ValueError(f"{variable} must be > 0 (got {environ[variable]})")
            values[spec.name] = value
        return cls(**values)


def _boolean(variable: str, text: str) -> bool:
    """`true`/`false` (any case, as helm renders booleans); anything else names the variable."""
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    raise ValueError(f"{variable}={text!r} must be true or false")
