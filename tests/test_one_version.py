"""ktune has one version, pyproject.toml's: every copy and every installed entry point says the same."""

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ktune
import ktune_trainer
from tests import one_version
from tests.one_version import PLACES, REPO_ROOT

VERSION = one_version.source_version()
STALE_INSTALL = "the installed package is older than pyproject.toml: run scripts/bootstrap"


def copy_of_the_version_places(destination: Path) -> Path:
    for place in PLACES:
        for path in REPO_ROOT.glob(place.files):
            target = destination / path.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return destination


def test_every_file_that_writes_the_version_writes_the_one_in_pyproject() -> None:
    mismatches = one_version.problems()
    assert not mismatches, (
        f"pyproject.toml says {VERSION}; run `scripts/set-version X.Y.Z` rather than editing copies:\n"
        + "\n".join(mismatches)
    )


def test_the_installed_distribution_and_both_packages_report_the_pyproject_version() -> None:
    assert importlib.metadata.version("ktune") == VERSION, STALE_INSTALL
    assert ktune.__version__ == VERSION
    assert ktune_trainer.__version__ == VERSION


def test_ktune_version_prints_the_pyproject_version() -> None:
    ktune_cli = Path(sys.executable).parent / "ktune"
    result = subprocess.run([ktune_cli, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ktune {VERSION}", STALE_INSTALL


def test_each_place_is_found_in_the_repository_so_a_changed_format_cannot_hide_a_copy() -> None:
    found, unmatched = one_version.find()
    assert unmatched == []
    assert {f.place for f in found} == set(PLACES)


def test_set_version_rewrites_every_copy_and_only_the_versions(tmp_path: Path) -> None:
    root = copy_of_the_version_places(tmp_path)
    before = {path: path.read_text().splitlines() for path in root.rglob("*") if path.is_file()}

    changes = one_version.set_version("12.34.5", root)

    assert one_version.problems(root) == []
    assert one_version.source_version(root) == "12.34.5"
    found, _ = one_version.find(root)
    assert {f"{f.path}:{f.line}" for f in found if f.version} == {change.split(": ")[0] for change in changes}
    for path, old_lines in before.items():
        new_lines = path.read_text().splitlines()
        assert len(new_lines) == len(old_lines)
        for old, new in zip(old_lines, new_lines, strict=True):
            assert old == new or old.replace(VERSION, "12.34.5") == new, f"{path}: {old!r} became {new!r}"


def test_set_version_leaves_empty_chart_image_tags_empty_so_they_keep_following_the_app_version(tmp_path: Path) -> None:
    root = copy_of_the_version_places(tmp_path)
    tags_before = [f.version for f in one_version.find()[0] if f.place.may_be_empty]
    one_version.set_version("2.0.0", root)
    tags_after = [f.version for f in one_version.find(root)[0] if f.place.may_be_empty]
    assert tags_before and tags_after == ["2.0.0" if tag else "" for tag in tags_before]


def test_setting_the_version_it_already_has_changes_nothing(tmp_path: Path) -> None:
    root = copy_of_the_version_places(tmp_path)
    assert one_version.set_version(VERSION, root) == []


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "1.2.3rc1", "1.2.3-rc.1", "", "1.2.3 "])
def test_set_version_refuses_anything_but_a_plain_release_and_touches_nothing(tmp_path: Path, bad: str) -> None:
    root = copy_of_the_version_places(tmp_path)
    with pytest.raises(ValueError, match="not a release version"):
        one_version.set_version(bad, root)
    assert one_version.problems(root) == []


def test_a_copy_that_differs_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    root = copy_of_the_version_places(tmp_path)
    chart = root / "charts" / "ktune" / "Chart.yaml"
    chart.write_text(chart.read_text().replace(f'appVersion: "{VERSION}"', 'appVersion: "9.9.9"'))
    line = next(n for n, text in enumerate(chart.read_text().splitlines(), 1) if text.startswith("appVersion:"))
    assert one_version.problems(root) == [
        f"charts/ktune/Chart.yaml:{line}: the chart's appVersion is '9.9.9', not '{VERSION}'"
    ]


def test_a_place_whose_format_changed_is_reported_instead_of_passing_unseen(tmp_path: Path) -> None:
    root = copy_of_the_version_places(tmp_path)
    manifest = root / "manifests" / "operator.yaml"
    manifest.write_text(manifest.read_text().replace(f"operator:{VERSION}", "operator@sha256:0123"))
    lost = "manifests/operator.yaml: the operator image's tag not found"
    assert any(problem.startswith(lost) for problem in one_version.problems(root))
    with pytest.raises(ValueError, match="places are missing"):
        one_version.set_version("2.0.0", root)
