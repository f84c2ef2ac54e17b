"""gp (Optuna's GPSampler, which needs torch) runs only with `ktune run`: the operator image has no torch, so the
cluster's rules (the CRD, `ktune validate`, the operator) refuse it with the reason, and `ktune run` offers it where
torch imports. tests/test_operator_install.py checks, in the operator's own install (no torch), that every other
sampler runs and what `ktune run` says about gp there."""

from pathlib import Path
from typing import Any

import pytest

from ktune.algorithms import LOCAL_RULES, RULES, load_local_tuningjob, validate_tuningjob
from ktune.spec import kube_yaml
from ktune.spec.crd_schema import tuningjob_crd

MINIMAL = Path(__file__).parents[1] / "fixtures" / "tuningjobs" / "valid" / "minimal.yaml"
REFUSAL = ("spec.sampler.name: gp runs only with `ktune run`: Optuna's gp sampler needs torch, which the operator "
           "image leaves out (PyPI's torch would add about 5 GB); on a cluster use tpe, qmc or cmaes")


def with_sampler(name: str) -> dict[str, Any]:
    job = kube_yaml.load(MINIMAL.read_text())
    job["spec"]["sampler"] = {"name": name, "seed": 1}
    return job


def test_the_cluster_refuses_gp_naming_why_and_what_to_use() -> None:
    assert validate_tuningjob(with_sampler("gp")) == [REFUSAL]
    assert "gp" not in RULES.sampler_names
    crd_enum = tuningjob_crd(RULES)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["sampler"]["properties"]["name"]["enum"]
    assert crd_enum == ["tpe", "random", "grid", "cmaes", "qmc", "nsga2"]


def test_ktune_run_offers_gp_where_torch_imports() -> None:
    pytest.importorskip("torch", reason="the dev install has torch (ktune[trainer]); CI runs this")
    assert "gp" in LOCAL_RULES.sampler_names
    assert load_local_tuningjob(with_sampler("gp")).spec.sampler.name == "gp"

