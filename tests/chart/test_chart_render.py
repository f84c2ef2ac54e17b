"""The chart as helm renders it: lint, labels, the operator Deployment, RBAC, optional objects, values checks."""

import json
from typing import Any

import pytest
import yaml

from ktune import __version__
from ktune.cli.main import build_parser
from ktune.operator.permissions import LEADER_ELECTION_RULES, OPERATOR_RULES
from ktune.operator.pods import METRICS_PORT_NAME
from ktune.operator.settings import OperatorSettings
from tests.chart.helm import CHART, NON_DEFAULT_VALUES, REPO, helm, kinds, one, render

RECOMMENDED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                      "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def non_default() -> list[dict[str, Any]]:
    return render("-f", str(NON_DEFAULT_VALUES), namespace="ktune-chart-release")


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("values", [[], ["-f", str(NON_DEFAULT_VALUES)]], ids=["default", "non-default"])
def test_helm_lint_strict_finds_nothing(values: list[str]):
    result = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in result.stdout


def test_default_values_make_a_cluster_wide_operator_with_its_service(default):
    assert kinds(default) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Pod", "Role", "RoleBinding",
                              "Service", "ServiceAccount", "ValidatingAdmissionPolicy",
                              "ValidatingAdmissionPolicyBinding"]


@pytest.mark.parametrize("values", ["default", "non_default"])
def test_every_object_carries_the_recommended_labels(values: str, request: pytest.FixtureRequest):
    for obj in request.getfixturevalue(values):
        labels = obj["metadata"]["labels"]
        missing = [label for label in RECOMMENDED_LABELS if label not in labels]
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/version"] == yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def test_the_operator_runs_as_one_restricted_replica_replaced_by_recreate(default):
    deployment = one(default, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(default)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9090, "health": 8080}


@pytest.mark.parametrize("values", ["default", "non_default"])
def test_the_operator_command_is_a_valid_ktune_operator_command_line(values: str, request: pytest.FixtureRequest):
    container = operator_container(request.getfixturevalue(values))
    assert container["command"] == ["ktune"]
    args = build_parser().parse_args(container["args"])
    assert args.handler.__name__ == "run_operator_command"
    metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    health_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "health")
    assert args.metrics_port == metrics_port
    assert args.liveness == f"http://0.0.0.0:{health_port}/healthz"


def test_default_operator_watches_all_namespaces_and_elects_a_leader_in_its_own(default):
    args = build_parser().parse_args(operator_container(default)["args"])
    assert args.all_namespaces and args.namespace == []
    assert args.leader_election == "ktune-system"


def test_watched_namespaces_get_roles_and_namespace_arguments_instead_of_a_cluster_role(non_default):
    args = build_parser().parse_args(operator_container(non_default)["args"])
    assert args.namespace == ["ktune-chart-team-a", "ktune-chart-team-b"]
    assert not [o for o in non_default if o["kind"].startswith("Cluster")]
    roles = {o["metadata"]["namespace"]: o for o in non_default if o["kind"] == "Role"}
    assert set(roles) == {"ktune-chart-team-a", "ktune-chart-team-b", "ktune-chart-release"}
    bindings = [o for o in non_default if o["kind"] == "RoleBinding"]
    assert {b["subjects"][0]["name"] for b in bindings} == {"tuner-operator"}


def test_chart_rbac_grants_exactly_the_operators_permissions_cluster_wide_or_per_namespace(default, non_default):
    operator_rules = [rule.policy_rule() for rule in OPERATOR_RULES]
    assert one(default, "ClusterRole")["rules"] == operator_rules
    assert one(default, "Role", "ktune-leader-election")["rules"] == [rule.policy_rule()
                                                                     for rule in LEADER_ELECTION_RULES]
    team_role = next(o for o in non_default
                     if o["kind"] == "Role" and o["metadata"]["namespace"] == "ktune-chart-team-a")
    assert team_role["rules"] == operator_rules


def test_monitoring_objects_and_the_dashboard_exist_only_when_enabled(default, non_default):
    assert not {"ServiceMonitor", "PodMonitor", "ConfigMap"} & set(kinds(default))
    service_monitor = one(non_default, "ServiceMonitor")
    service = one(non_default, "Service")
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service_monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_operator_service_monitor_keeps_the_jobs_namespace_and_passes_relabelings_through(non_default):
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["serviceMonitor"]
    assert defaults["honorLabels"] is True, "without honorLabels the job's namespace becomes exported_namespace"
    endpoint = one(non_default, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["honorLabels"] is True
    assert endpoint["relabelings"] == [{"action": "replace", "targetLabel": "cluster", "replacement": "team-cluster"}]
    assert endpoint["metricRelabelings"] == [{"action": "drop", "sourceLabels": ["__name__"],
                                              "regex": "process_open_fds"}]


def test_the_trial_pod_monitor_selects_trial_pods_and_maps_their_job_and_trial_labels(non_default):
    pod_monitor = one(non_default, "PodMonitor")["spec"]
    assert pod_monitor["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "ktune"}
    assert pod_monitor["namespaceSelector"]["matchNames"] == ["ktune-chart-team-a", "ktune-chart-team-b"]
    endpoint = pod_monitor["podMetricsEndpoints"][0]
    assert endpoint["port"] == METRICS_PORT_NAME
    assert endpoint["relabelings"] == [
        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_ktune_dev_(.+)", "replacement": "$1"},
        {"action": "replace", "targetLabel": "cluster", "replacement": "team-cluster"},
    ], "the chart's label mapping first, the values' relabelings after it"
    assert endpoint["metricRelabelings"] == [{"action": "keep", "sourceLabels": ["__name__"], "regex": "ktune_.*"}]
    assert endpoint["scrapeTimeout"] == "5s"


def test_the_dashboard_config_map_holds_the_dashboard_for_the_grafana_sidecar(non_default):
    config_map = one(non_default, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "ktune-chart-monitoring"
    shipped = json.loads((CHART / "dashboards" / "ktune.json").read_text())
    assert json.loads(config_map["data"]["ktune.json"]) == shipped


def test_settings_become_environment_variables_the_operator_reads(non_default):
    env = {e["name"]: e["value"] for e in operator_container(non_default)["env"] if "value" in e}
    settings = OperatorSettings.from_env(env)
    assert settings.reconcile_interval_seconds == 5
    assert settings.max_workers == 8
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"


def test_decimal_settings_given_with_set_reach_the_operator_as_numbers():
    objects = render("--set", "settings.reconcileIntervalSeconds=0.5", "--set", "settings.maxWorkers=4")
    env = {e["name"]: e["value"] for e in operator_container(objects)["env"]}
    settings = OperatorSettings.from_env(env)
    assert (settings.reconcile_interval_seconds, settings.max_workers) == (0.5, 4)


def test_the_image_is_the_app_version_tag_by_default_and_the_digest_when_given(default, non_default):
    assert operator_container(default)["image"] == f"ghcr.io/ktune/operator:{__version__}"
    assert operator_container(non_default)["image"].startswith("registry.example.com/ml/operator@sha256:")


def test_the_helm_test_pod_is_a_test_hook_that_no_operator_selector_matches(default):
    test_pod = one(default, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    selector = one(default, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= test_pod["metadata"]["labels"].items()
    assert not one(default, "Service")["spec"]["selector"].items() <= test_pod["metadata"]["labels"].items()


def test_several_replicas_without_leader_election_are_refused_with_the_reason():
    result = helm("template", "ktune", str(CHART), "--set", "replicaCount=2", "--set", "leaderElection.enabled=false",
                  check=False)
    assert result.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled=true" in result.stderr


@pytest.mark.parametrize(("setting", "named"), [
    ("metrics.port=http", "/metrics/port"),
    ("metrcs.port=9090", "metrcs"),
    ("settings.reconcileIntervalSecond=2", "reconcileIntervalSecond"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("settings.reconcileIntervalSeconds=0", "/settings/reconcileIntervalSeconds"),
])
def test_a_wrong_value_is_refused_by_the_schema_naming_the_key(setting: str, named: str):
    result = helm("template", "ktune", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr


def test_without_service_account_and_rbac_creation_the_operator_uses_the_named_account():
    objects = render("--set", "serviceAccount.create=false", "--set", "serviceAccount.name=platform-operator",
                     "--set", "rbac.create=false")
    assert not {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & set(kinds(objects))
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"


def test_a_service_monitor_without_the_metrics_service_is_refused_with_the_reason():
    result = helm("template", "ktune", str(CHART), "--set", "metrics.service.enabled=false",
                  "--set", "metrics.serviceMonitor.enabled=true", check=False)
    assert result.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in result.stderr


def test_the_static_manifest_serves_operator_metrics_on_the_charts_default_port(default):
    documents = [d for d in yaml.safe_load_all((REPO / "manifests" / "operator.yaml").read_text()) if d]
    static = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    chart_ports = {port["name"]: port["containerPort"] for port in operator_container(default)["ports"]}
    static_ports = {port["name"]: port["containerPort"] for port in static["ports"]}
    assert static_ports == {name: chart_ports[name] for name in ("metrics", "health")}
    assert f"--metrics-port={chart_ports['metrics']}" in static["command"]
    build_parser().parse_args(static["command"][1:])  # every flag is one `ktune` accepts
