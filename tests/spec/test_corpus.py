"""The shared TuningJob corpus: every valid example loads, every invalid one fails for its stated reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ktune.algorithms import load_tuningjob, validate_tuningjob
from ktune.spec import SpecError, kube_yaml

CORPUS = Path(__file__).parents[1] / "fixtures" / "tuningjobs"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))


def expected_error(path: Path) -> str:
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# error: "), f"{path.name} must start with '# error: <substring>'"
    return first_line.removeprefix("# error: ")


def test_the_corpus_holds_enough_distinct_invalid_specs() -> None:
    assert len(VALID) >= 4
    assert len(INVALID) >= 35
    assert len({expected_error(path) for path in INVALID}) == len(INVALID)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_example_loads_without_problems(path: Path) -> None:
    job = load_tuningjob(path)
    assert job.name == kube_yaml.load(path.read_text())["metadata"]["name"]
    assert validate_tuningjob(kube_yaml.load(path.read_text())) == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_is_refused_with_its_stated_reason(path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_tuningjob(path)
    assert expected_error(path) in str(caught.value)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_spec_is_a_full_kubernetes_object(path: Path) -> None:
    obj = kube_yaml.load(path.read_text())
    assert obj["apiVersion"].startswith("ktune.dev/") and obj["kind"]
    assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}
