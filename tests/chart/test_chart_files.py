"""The chart's files, read without helm: documented values, their schema, versions, the dashboard's copy."""

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import yaml

import ktune
from ktune.operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ktune"
VALUES = CHART / "values.yaml"


def value_paths(node: object, prefix: str = "") -> Iterator[str]:
    """Every key path in values.yaml ("metrics.service.port"), parents before children."""
    if isinstance(node, dict):
        for key, child in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from value_paths(child, path)


def documented_params() -> list[str]:
    return re.findall(r"^\s*## @param (\S+) \S", VALUES.read_text(), flags=re.MULTILINE)


def schema_node(schema: dict, path: str) -> dict | None:
    node = schema
    for key in path.split("."):
        node = node.get("properties", {}).get(key)
        if node is None:
            return None
    return node


def test_every_value_is_documented_by_itself_or_a_documented_parent():
    documented = set(documented_params())
    values = yaml.safe_load(VALUES.read_text())
    for path in value_paths(values):
        parts = path.split(".")
        documented_here_or_above = any(".".join(parts[: i + 1]) in documented for i in range(len(parts)))
        group_of_documented_values = any(p.startswith(path + ".") for p in documented)
        assert documented_here_or_above or group_of_documented_values, (
            f"values.yaml: {path} has no '## @param {path} <description>' comment")


def test_every_documented_param_exists_in_values_and_in_the_schema():
    values = yaml.safe_load(VALUES.read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    paths = set(value_paths(values))
    for param in documented_params():
        assert param in paths, f"values.yaml documents {param}, which is not a value"
        assert schema_node(schema, param) is not None, f"values.schema.json has no property for {param}"


def test_the_schema_refuses_keys_it_does_not_know_at_every_documented_level():
    schema = json.loads((CHART / "values.schema.json").read_text())

    def closed(node: dict, where: str) -> Iterator[str]:
        if "properties" in node:
            if node.get("additionalProperties") is not False:
                yield where or "(top level)"
            for key, child in node["properties"].items():
                yield from closed(child, f"{where}.{key}" if where else key)

    assert list(closed(schema, "")) == []


def test_operator_settings_in_the_schema_are_the_operator_settings_fields():
    schema = json.loads((CHART / "values.schema.json").read_text())
    in_schema = set(schema["properties"]["settings"]["properties"])
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), f.name) for f in fields(OperatorSettings)}
    assert in_schema == camel


def test_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"] == ktune.__version__


def test_the_dashboard_in_manifests_is_the_charts_dashboard():
    chart_copy = (CHART / "dashboards" / "ktune.json").read_bytes()
    manifests_copy = (REPO / "manifests" / "grafana" / "ktune.json").read_bytes()
    assert manifests_copy == chart_copy, (
        "manifests/grafana/ktune.json differs from charts/ktune/dashboards/ktune.json (the source): "
        "cp charts/ktune/dashboards/ktune.json manifests/grafana/ktune.json")


def test_the_charts_crds_folder_holds_only_the_generated_crds():
    # Helm installs every file in crds/; what crds.yaml holds is checked by tests/generated.
    copies = sorted(path.name for path in (CHART / "crds").iterdir())
    assert copies == ["crds.yaml"], f"charts/ktune/crds/ holds {copies}; it should hold only crds.yaml"
