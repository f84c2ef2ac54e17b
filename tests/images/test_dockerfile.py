"""The root Dockerfile, checked without a Docker engine: what it copies, runs as and starts.

Build commands (documented in the README):
    docker build --target operator -t <registry>/operator:0.1.0 .
    docker build --target trainer  -t <registry>/trainer:0.1.0 .
"""

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ktune.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CHART_VALUES = REPO / "charts" / "ktune" / "values.yaml"
FINAL_STAGES = ("operator", "trainer")


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def last(self, keyword: str) -> Instruction | None:
        found = [i for i in self.instructions if i.keyword == keyword]
        return found[-1] if found else None


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, comments dropped and `\\` continuations joined."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    return [Instruction(*[*line.split(None, 1), ""][:2]) for line in logical]


def parse() -> tuple[dict[str, str], dict[str, Stage]]:
    """The global ARG defaults and the stages by name."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for instruction in instructions(DOCKERFILE.read_text()):
        keyword = instruction.keyword.upper()
        if keyword == "FROM":
            base, _, name = instruction.arguments.partition(" AS ")
            stage = stages.setdefault(name.strip(), Stage(base=base.strip(), name=name.strip()))
        elif stage is None and keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            args[name] = default
        elif stage is not None:
            stage.instructions.append(Instruction(keyword, instruction.arguments))
    return args, stages


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), f"{instruction.keyword} must use the exec (JSON) form: {instruction.arguments}"
    return value


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last matching rule wins)."""
    excluded = False
    for rule in (REPO / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or any(
            fnmatch.fnmatchcase(part, pattern) for part in parts if rule.lstrip("!").startswith("**/")
        ):
            excluded = not negate
    return excluded


def copy_sources(instruction: Instruction) -> list[str]:
    words = [w for w in instruction.arguments.split() if not w.startswith("--")]
    return words[:-1]


def test_the_final_stages_are_the_operator_and_trainer_targets():
    _, stages = parse()
    assert set(FINAL_STAGES) <= set(stages)


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context():
    _, stages = parse()
    copies = [
        i for stage in stages.values() for i in stage.instructions
        if i.keyword in ("COPY", "ADD") and "--from=" not in i.arguments
    ]
    assert copies, "the Dockerfile copies the sources from the build context"
    for instruction in copies:
        for source in copy_sources(instruction):
            assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
            assert not dockerignore_excludes(source), f"COPY {source}: .dockerignore leaves it out of the context"


def test_the_build_context_leaves_out_the_virtualenv_tests_and_git():
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "ktune-runs/x/journal.log",
                 "operator/ktune/__pycache__/cli.cpython-311.pyc"):
        assert dockerignore_excludes(path), f"{path} would be sent to the Docker daemon"
    assert not dockerignore_excludes("operator/ktune/cli/main.py")


def test_stages_copy_only_from_stages_defined_earlier():
    _, stages = parse()
    names = list(stages)
    for index, stage in enumerate(stages.values()):
        for instruction in stage.instructions:
            for source in re.findall(r"--(?:from|mount=type=bind,from)=([\w-]+)", instruction.arguments):
                assert source in names[:index], f"stage {stage.name} copies from {source}, not an earlier stage"


def test_base_images_are_pinned_to_exact_versions():
    args, stages = parse()
    for stage in stages.values():
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)
        if base in stages:
            continue
        assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+", base), f"stage {stage.name}: {base} is not pinned"
        assert not base.endswith(":latest")


def test_entrypoints_are_the_console_scripts_of_the_package():
    _, stages = parse()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert exec_form(stages["operator"].last("ENTRYPOINT")) == ["ktune"]
    assert exec_form(stages["operator"].last("CMD"))[0] == "operator"
    assert exec_form(stages["trainer"].last("ENTRYPOINT")) == ["ktune-trainer"]
    assert {"ktune", "ktune-trainer"} <= set(scripts)


def test_the_default_commands_are_valid_command_lines_of_the_console_scripts():
    _, stages = parse()
    operator_args = build_parser().parse_args(exec_form(stages["operator"].last("CMD")))
    assert operator_args.handler.__name__ == "run_operator_command"
    trainer = Path(sys.executable).parent / exec_form(stages["trainer"].last("ENTRYPOINT"))[0]
    result = subprocess.run([trainer, *exec_form(stages["trainer"].last("CMD"))], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("target", FINAL_STAGES)
def test_final_stages_run_as_a_non_root_user(target: str):
    _, stages = parse()
    user = stages[target].last("USER")
    assert user is not None, f"stage {target} sets no USER"
    assert user.arguments.split(":")[0] not in ("0", "root")


def test_final_stages_install_without_pip_caches_or_compilers():
    _, stages = parse()
    for target in FINAL_STAGES:
        for instruction in stages[target].instructions:
            if instruction.keyword == "RUN" and "pip install" in instruction.arguments:
                assert "--no-cache-dir" in instruction.arguments, f"{target}: pip keeps its cache in the image"
            assert not re.search(r"apt-get install.*\b(gcc|g\+\+|build-essential)\b", instruction.arguments)


def test_the_operator_image_health_check_and_port_match_the_chart_defaults():
    _, stages = parse()
    values = yaml.safe_load(CHART_VALUES.read_text())
    port = values["metrics"]["port"]
    operator = stages["operator"]
    assert operator.last("EXPOSE").arguments == str(port)
    assert f"--metrics-port={port}" in exec_form(operator.last("CMD"))
    assert f":{port}/metrics" in operator.last("HEALTHCHECK").arguments


def test_image_targets_are_named_as_the_chart_values_expect():
    values = yaml.safe_load(CHART_VALUES.read_text())
    assert values["image"]["repository"].rsplit("/", 1)[-1] == "operator"
    assert values["trainerImage"]["repository"].rsplit("/", 1)[-1] == "trainer"


def test_the_operator_image_needs_no_torch():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    assert "torch" not in base and "transformers" not in base
    assert any(dep.startswith("torch") for dep in project["optional-dependencies"]["trainer"])


def test_hadolint_finds_no_problem_in_the_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
