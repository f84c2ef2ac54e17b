"""The generated files of manifests/ and charts/ktune/: up to date, checked by `scripts/generate --check`, and
saying what their source says."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ktune.operator import manifest_files
from ktune.operator.permissions import (
    ADMISSION_POLICY_SPEC,
    ADMISSION_VALIDATION_ACTIONS,
    LEADER_ELECTION_RULES,
    OPERATOR_RULES,
)

REPO = Path(__file__).resolve().parents[2]
RBAC_RULES_TEMPLATE = "charts/ktune/templates/_rbac_rules.tpl"


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """manifests/ and charts/ copied into a fresh directory, to break without touching the real ones."""
    for folder in ("manifests", "charts"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def check(root: Path) -> subprocess.CompletedProcess:
    """What `scripts/generate --check` runs, minus the venv bootstrap."""
    return subprocess.run([sys.executable, "-m", "ktune.operator.manifest_files", "--check", "--root", str(root)],
                          capture_output=True, text=True, timeout=120, check=False)


def documents(path: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((REPO / path).read_text()) if doc}


def test_every_generated_file_is_up_to_date():
    assert manifest_files.stale_files(REPO) == [], "stale generated files: run scripts/generate"


def test_the_check_fails_listing_a_hand_edited_file_and_the_command_that_fixes_it(repo_copy: Path):
    edited = repo_copy / RBAC_RULES_TEMPLATE
    edited.write_text(edited.read_text().replace("verbs: [list, watch, create, delete]", "verbs: [\"*\"]"))
    before = edited.read_text()
    result = check(repo_copy)
    assert result.returncode == 1
    assert RBAC_RULES_TEMPLATE in result.stderr.splitlines()[1]
    assert "run scripts/generate" in result.stderr
    assert edited.read_text() == before  # --check writes nothing


def test_generating_rewrites_what_was_edited_or_missing_and_then_the_check_passes(
    repo_copy: Path, capsys: pytest.CaptureFixture[str]
):
    operator_yaml = repo_copy / "manifests" / "operator.yaml"
    operator_yaml.write_text(operator_yaml.read_text().replace("verbs: [get, create, update]", "verbs: [get]"))
    shutil.rmtree(repo_copy / "manifests" / "admission")
    assert manifest_files.main(["--root", str(repo_copy)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "wrote manifests/operator.yaml", "wrote manifests/admission/tuningjob-author-may-create-pods.yaml"]
    assert manifest_files.stale_files(repo_copy) == []
    assert operator_yaml.read_text() == (REPO / "manifests" / "operator.yaml").read_text()


def test_an_operator_manifest_without_one_of_its_generated_regions_is_refused_naming_it(
    repo_copy: Path, capsys: pytest.CaptureFixture[str]
):
    operator_yaml = repo_copy / "manifests" / "operator.yaml"
    text = operator_yaml.read_text()
    operator_yaml.write_text(text.replace("permissions.LEADER_ELECTION_RULES; do not edit", "rules"))
    assert manifest_files.main(["--check", "--root", str(repo_copy)]) == 1
    error = capsys.readouterr().err
    assert "manifests/operator.yaml" in error
    assert "LEADER_ELECTION_RULES" in error


def test_the_operator_manifest_grants_exactly_the_permissions_rules():
    operator = documents("manifests/operator.yaml")
    assert operator["ClusterRole"]["rules"] == [rule.policy_rule() for rule in OPERATOR_RULES]
    assert operator["Role"]["rules"] == [rule.policy_rule() for rule in LEADER_ELECTION_RULES]


def test_the_admission_manifest_holds_the_permissions_policy_and_a_binding_to_it():
    admission = documents("manifests/admission/tuningjob-author-may-create-pods.yaml")
    policy = admission["ValidatingAdmissionPolicy"]
    assert policy["spec"] == ADMISSION_POLICY_SPEC
    assert admission["ValidatingAdmissionPolicyBinding"]["spec"] == {
        "policyName": policy["metadata"]["name"], "validationActions": ADMISSION_VALIDATION_ACTIONS}


def test_every_generated_file_says_in_its_first_lines_that_it_is_generated_and_by_which_command():
    for path, text in manifest_files.generated_files(REPO).items():
        head = "".join(text.splitlines(keepends=True)[:3])
        assert "generated" in head.lower() and "`scripts/generate`" in head, path
