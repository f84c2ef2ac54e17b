"""The CRDs: generated from ktune.spec, committed up to date, and self-documenting."""

from pathlib import Path

import yaml

from ktune.algorithms import RULES
from ktune.spec import crd_schema as crds

ROOT = Path(__file__).resolve().parents[2]


def walk(schema: dict, path: str):
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def schemas() -> dict[str, dict]:
    return {
        "tuningjob": crds.tuningjob_crd(RULES)["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "trial": crds.trial_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
    }


def test_every_field_has_a_description_for_kubectl_explain():
    missing = [path for kind, schema in schemas().items() for path, node in walk(schema, kind)
               if not node.get("description")]
    assert missing == []


def test_unknown_fields_are_kept_only_in_free_form_maps_and_choices():
    preserving = sorted(path for kind, schema in schemas().items() for path, node in walk(schema, kind)
                        if node.get("x-kubernetes-preserve-unknown-fields"))
    assert preserving == [
        "trial.spec.params",
        "tuningjob.spec.parameters[].choices[]",
        "tuningjob.spec.pruner.options",
        "tuningjob.spec.sampler.options",
        "tuningjob.spec.trial.resource.metadata",
        "tuningjob.spec.trial.resource.spec",
        "tuningjob.spec.trial.resource.spec.mpiReplicaSpecs{}.template",
        "tuningjob.spec.trial.resource.spec.pytorchReplicaSpecs{}.template",
        "tuningjob.spec.trial.resource.spec.template",
        "tuningjob.spec.trial.resource.spec.tfReplicaSpecs{}.template",
        "tuningjob.spec.trial.resource.spec.xgbReplicaSpecs{}.template",
        "tuningjob.spec.trial.template",
        "tuningjob.spec.warmStart.enqueue[]",
        "tuningjob.status.bestTrial.params",
        "tuningjob.status.paretoFront[].params",
    ]


def test_both_crds_have_short_names_status_subresource_and_printer_columns():
    documents = list(yaml.safe_load_all((ROOT / "manifests" / "crds.yaml").read_text()))
    by_kind = {doc["spec"]["names"]["kind"]: doc for doc in documents}
    assert by_kind["TuningJob"]["spec"]["names"]["shortNames"] == ["tj"]
    assert by_kind["Trial"]["spec"]["names"]["shortNames"] == ["tr"]
    for doc in documents:
        assert doc["spec"]["versions"][0]["subresources"] == {"status": {}}
    columns = [c["name"] for c in by_kind["TuningJob"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:6] == ["Phase", "Objective", "Best", "Trials", "Running", "Age"]
    columns = [c["name"] for c in by_kind["Trial"]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:7] == ["Job", "State", "Kind", "Pods", "Value", "Params", "Age"]
