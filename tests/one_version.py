"""One version for ktune: pyproject.toml's, and every copy of it in the repository.

The version lives in pyproject.toml (`[project] version`). The installed package reads it from the
distribution's metadata (`ktune.__version__`, `ktune_trainer.__version__`, `ktune --version`, the operator's
`ktune_build_info`). The files in `PLACES` copy it because their formats cannot refer to it: the chart's
Chart.yaml, the image tags of the manifests, examples, Dockerfile and README. `scripts/set-version X.Y.Z` runs
`python -m tests.one_version X.Y.Z` to rewrite them all; tests/test_one_version.py fails, naming the file and
the line, when one differs. Standard library only, so that it runs before .venv exists.
"""

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# What scripts/set-version accepts: a plain release, valid both as a Python (PEP 440) and a chart (SemVer) version.
RELEASE = re.compile(r"\d+\.\d+\.\d+")
# An image of ours in any registry (ghcr.io/ktune/trainer:0.1.0, $REGISTRY/operator:0.1.0): its tag.
IMAGE = r"[\w.$/-]*/(?:operator|trainer):(?P<version>\d+\.\d+\.\d+[\w.+-]*)"


@dataclass(frozen=True)
class Place:
    """Where the version is written: files (a glob from the repository root) and a line pattern with a `version` group.

    Every file the glob matches must hold at least one match, so a place that changed its format fails the
    check instead of passing it unseen.
    """

    files: str
    pattern: str
    what: str
    may_be_empty: bool = False  # an empty value means "the version" (the chart's image tags default to appVersion)


PLACES = (
    Place("pyproject.toml", r'^version = "(?P<version>[^"]*)"', "the version (the one place it lives)"),
    Place("charts/ktune/Chart.yaml", r'^version: "?(?P<version>[^"\s]*)"?\s*$', "the chart's version"),
    Place("charts/ktune/Chart.yaml", r'^appVersion: "?(?P<version>[^"\s]*)"?\s*$', "the chart's appVersion"),
    Place("charts/ktune/values.yaml", r'^  tag: "?(?P<version>[^"\s]*)"?', "a default image tag", may_be_empty=True),
    Place("manifests/operator.yaml", IMAGE, "the operator image's tag"),
    Place("examples/*.yaml", IMAGE, "the trainer image's tag"),
    Place("Dockerfile", IMAGE, "an image tag in a build command"),
    Place("README.md", IMAGE, "an image tag in the README"),
)


@dataclass(frozen=True)
class Found:
    """One written copy of the version."""

    path: str  # relative to the repository root
    line: int  # 1-based
    start: int  # the version's span within the line
    end: int
    version: str
    place: Place

    def agrees_with(self, version: str) -> bool:
        return self.version == version or (self.place.may_be_empty and self.version == "")


def source_version(root: Path = REPO_ROOT) -> str:
    """The version, from pyproject.toml."""
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def find(root: Path = REPO_ROOT) -> tuple[list[Found], list[str]]:
    """Every copy of the version under ``root``, and a problem line for each place that matches nothing."""
    found: list[Found] = []
    unmatched: list[str] = []
    for place in PLACES:
        pattern = re.compile(place.pattern)
        paths = sorted(root.glob(place.files))
        if not paths:
            unmatched.append(f"{place.files}: no such file (it should hold {place.what})")
        for path in paths:
            relative = path.relative_to(root).as_posix()
            here = [
                Found(relative, number, match.start("version"), match.end("version"), match["version"], place)
                for number, line in enumerate(path.read_text().splitlines(), start=1)
                for match in pattern.finditer(line)
            ]
            if not here:
                unmatched.append(f"{relative}: {place.what} not found (pattern {place.pattern!r} matches no line)")
            found += here
    return found, unmatched


def problems(root: Path = REPO_ROOT, version: str | None = None) -> list[str]:
    """`path:line: ...` for every copy that is not ``version`` (default: pyproject.toml's), and every lost place."""
    expected = version if version is not None else source_version(root)
    found, unmatched = find(root)
    return unmatched + [
        f"{f.path}:{f.line}: {f.place.what} is {f.version!r}, not {expected!r}"
        for f in found
        if not f.agrees_with(expected)
    ]


def set_version(version: str, root: Path = REPO_ROOT) -> list[str]:
    """Write ``version`` into every place (empty values stay empty); return `path:line: old -> new` per change."""
    if not RELEASE.fullmatch(version):
        raise ValueError(f"{version!r} is not a release version X.Y.Z (digits only, e.g. 0.2.0)")
    found, unmatched = find(root)
    if unmatched:
        raise ValueError("cannot set the version, places are missing:\n" + "\n".join(unmatched))
    changes: list[str] = []
    for path in sorted({f.path for f in found}):
        lines = (root / path).read_text().splitlines(keepends=True)
        # Right to left within a line, so that earlier spans stay valid.
        for f in sorted((f for f in found if f.path == path), key=lambda f: (f.line, f.start), reverse=True):
            if f.version == version or (f.place.may_be_empty and f.version == ""):
                continue
            line = lines[f.line - 1]
            lines[f.line - 1] = line[: f.start] + version + line[f.end :]
            changes.append(f"{path}:{f.line}: {f.version} -> {version}")
        (root / path).write_text("".join(lines))
    return sorted(changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/set-version", description="Set ktune's version everywhere.")
    parser.add_argument("version", help="the new version, X.Y.Z")
    args = parser.parse_args(argv)
    try:
        changes = set_version(args.version)
    except ValueError as error:
        print(f"set-version: {error}", file=sys.stderr)
        return 2
    print("\n".join(changes) if changes else f"every place already says {args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
