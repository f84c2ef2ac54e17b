"""The operator's own install runs every sampler the CRD allows.

A fresh virtual environment gets ktune exactly as the operator image's Dockerfile installs it: the project
without extras, so its [project.dependencies] and nothing else (no trainer extra, no torch, no
--system-site-packages). In it, tests/install/samplers_in_this_install.py drives a job through ktune's Engine with
each sampler the cluster's rules allow, one and two objectives. What it does not prove: the image's own Python
build and base layer (python:3.11-slim), which only a docker build on CI shows.

Cost: one `pip install` of the operator's dependencies, about 2 minutes on 2 shared cores with pip's cache warm.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ktune.algorithms import RULES

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "samplers_in_this_install.py"
MAX_INSTALL_BYTES = 700 * 2**20  # measured 0.55 GB with scipy and pip; torch from PyPI would add 5.3 GB


@pytest.fixture(scope="module")
def operator_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("operator-install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(REPO)],
                         capture_output=True, text=True, timeout=900, check=False)
    assert pip.returncode == 0, pip.stderr[-4000:]
    return venv


@pytest.fixture(scope="module")
def found(operator_install: Path) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(operator_install / "bin" / "python"), str(SCRIPT)], capture_output=True,
                            text=True, timeout=300, check=False, env=env, cwd=operator_install)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_every_sampler_the_crd_allows_runs_in_the_operator_install(found: dict[str, Any]) -> None:
    expected = {}
    for name in RULES.sampler_names:
        expected[name] = 8
        if name not in RULES.single_objective_samplers:
            expected[f"{name} (2 objectives)"] = 8
    assert found["samplers"] == expected
    assert {"qmc", "qmc (2 objectives)"} <= set(found["samplers"])  # scipy is in the operator's dependencies


def test_the_operator_install_has_no_torch_so_gp_is_refused_with_the_reason(found: dict[str, Any]) -> None:
    assert found["torch"] is False
    assert set(found["cluster_refuses"]) == {"gp"} and "on a cluster use tpe, qmc or cmaes" in found[
        "cluster_refuses"]["gp"]
    assert found["ktune_run_refuses"] == {
        "gp": "gp needs torch, which is not installed here: pip install torch (or ktune[trainer])"}


def test_the_operator_install_stays_small(operator_install: Path) -> None:
    size = sum(path.stat().st_size for path in operator_install.rglob("*") if path.is_file() and not path.is_symlink())
    assert size < MAX_INSTALL_BYTES, f"{size / 2**20:.0f} MiB"
