"""ktune reads YAML as kubectl does: each file here is parsed by the machine's kubectl, offline
(`kubectl label --local -o json`, which prints the object kubectl would send), and by ktune.spec.kube_yaml,
and the two must be equal, value for value and type for type."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ktune.algorithms import load_tuningjob
from ktune.spec import SpecError, kube_yaml

ROOT = Path(__file__).resolve().parents[2]
SCALARS = ROOT / "tests" / "fixtures" / "kube_yaml" / "scalars.yaml"
TUNINGJOB_FILES = sorted((ROOT / "tests" / "fixtures" / "tuningjobs").glob("*/*.yaml")) + sorted(
    (ROOT / "examples").glob("*.yaml"))
MARK = "ktune.dev/parsed-by"


def kubectl_objects(*paths: Path) -> list[Any]:
    """Every object in `paths` as kubectl parses it (one call; the label it adds is taken off again)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH: apt-get install kubectl (CONTRIBUTING.md)"
    args = [kubectl, "label", "--local", "-o", "json", f"{MARK}=kubectl"]
    for path in paths:
        args += ["-f", str(path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    decoder, text, at, objects = json.JSONDecoder(), result.stdout, 0, []
    while text[at:].strip():
        obj, at = decoder.raw_decode(text, len(text) - len(text[at:].lstrip()))
        labels = obj["metadata"]["labels"]
        del labels[MARK]
        if not labels:
            del obj["metadata"]["labels"]
        objects.append(obj)
    return objects


def typed(value: Any) -> Any:
    """`value` with each scalar paired with its type, so 1 == 1.0 == True no longer hold."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def test_tricky_scalars_read_as_kubectl_reads_them() -> None:
    ours = kube_yaml.load(SCALARS.read_text())
    assert typed(ours) == typed(kubectl_objects(SCALARS)[0])
    numbers = ours["spec"]["numbers"]
    assert (numbers["exponent"], numbers["octalO"], numbers["exponentWhole"], numbers["exponentOutOfRange"]) == (
        1e-5, 15, 100000, "1e400")
    assert ours["spec"]["booleans"][:3] == [True, True, True] and ours["spec"]["strings"][0] == "2001-12-14"


def test_every_tuningjob_fixture_and_example_reads_as_kubectl_reads_it() -> None:
    ours = [obj for path in TUNINGJOB_FILES for obj in kube_yaml.load_all(path.read_text())]
    assert typed(ours) == typed(kubectl_objects(*TUNINGJOB_FILES))


def test_generated_number_like_scalars_read_as_kubectl_reads_them(tmp_path: Path) -> None:
    """Tokens of digits, signs, dots, underscores, exponents and base prefixes, 600 of them, one kubectl call."""
    rng = random.Random(16)
    alphabet = "0123456789" * 3 + "+-._eExXoObBaF"
    tokens = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))) for _ in range(600)}
    plain = sorted(token for token in tokens if _is_plain_scalar(token))
    path = tmp_path / "numbers.yaml"
    path.write_text(kube_yaml.dump({"apiVersion": "v1", "kind": "Numbers", "metadata": {"name": "numbers"}})
                    + "spec:\n" + "".join(f"  t{index}: {token}\n" for index, token in enumerate(plain)))
    assert len(plain) > 400
    assert typed(kube_yaml.load(path.read_text())) == typed(kubectl_objects(path)[0])


def _is_plain_scalar(token: str) -> bool:
    try:
        node = yaml.compose(f"k: {token}\n")
    except yaml.YAMLError:
        return False
    return isinstance(node, yaml.MappingNode) and isinstance(node.value[0][1], yaml.ScalarNode) \
        and node.value[0][1].style is None and token not in (".inf", "-.inf", "+.inf")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_values_without_a_json_form_are_refused_like_kubectl_refuses_them(tmp_path: Path, value: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(f"apiVersion: ktune.dev/v1alpha1\nkind: TuningJob\nmetadata: {{name: x}}\nspec: {{a: {value}}}\n")
    kubectl = subprocess.run(["kubectl", "label", "--local", "-o", "json", "-f", str(path), "a=b"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert kubectl.returncode != 0 and "unsupported value" in kubectl.stderr
    with pytest.raises(SpecError) as error:
        load_tuningjob(path)
    assert error.value.problems == [f"{path}: not valid YAML: line 4, column 11: {value} has no JSON form "
                                    "(kubectl refuses the file); quote it for a string"]


def test_dump_quotes_every_string_kubectl_would_read_as_something_else(tmp_path: Path) -> None:
    strings = ["y", "n", "yes", "off", "1e-5", "0o17", "017", "0x1F", "1_000", "08", "null", "~", "", "1.",
               ".5", "-1", "2001-12-14", "1:30", "--lr=1e-5", "1e", "0x", "text"]
    obj = {"apiVersion": "v1", "kind": "Strings", "metadata": {"name": "s"}, "spec": {"values": strings,
                                                                                    "numbers": [1e-5, 5, 0.5]}}
    path = tmp_path / "strings.yaml"
    path.write_text(kube_yaml.dump(obj))
    assert typed(kubectl_objects(path)[0]) == typed(kube_yaml.load(path.read_text())) == typed(obj)
    assert "- --lr=1e-5\n" in path.read_text() and "- 1e\n" in path.read_text()  # quoted only when needed
