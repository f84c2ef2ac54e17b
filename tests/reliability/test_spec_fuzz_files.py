"""ktune.spec given files: any bytes, and valid TuningJob files with characters flipped, give a TuningJob or a
SpecError naming the file, never another exception (the object-level fuzzing is in tests/spec/test_fuzz.py)."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktune.algorithms import load_tuningjob
from ktune.spec import SpecError, TuningJob

VALID_FILES = sorted((Path(__file__).parents[1] / "fixtures" / "tuningjobs" / "valid").glob("*.yaml"))
YAML_CHARACTERS = [*":-[]{}&*!|>'\"%@`#,? \n\t0.e", "λ", "\x00"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def load_or_spec_error(path: Path) -> None:
    try:
        assert isinstance(load_tuningjob(path), TuningJob)
    except SpecError as error:
        assert error.problems and all(isinstance(problem, str) and problem for problem in error.problems)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_in_a_file_give_a_job_or_spec_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(content)
    load_or_spec_error(path)


@FUZZ
@given(st.data())
def test_a_valid_file_with_characters_replaced_gives_a_job_or_spec_error(tmp_path: Path, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(VALID_FILES)).read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text) - 1))
        text = text[:at] + data.draw(st.sampled_from(YAML_CHARACTERS)) + text[at + 1:]
    path = tmp_path / "job.yaml"
    path.write_text(text)
    load_or_spec_error(path)


def test_a_missing_file_and_a_directory_give_spec_errors(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.yaml", tmp_path):
        try:
            load_tuningjob(path)
        except SpecError as error:
            assert str(path) in str(error)
        else:
            raise AssertionError(f"{path} loaded")
