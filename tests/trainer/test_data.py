import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ktune_trainer.cli import main
from ktune_trainer.data import ESCI_GAINS, load_data, write_rows

ROWS = [
    {
        "query_id": f"q{q}",
        "query": f"query {q}",
        "product_id": f"p{q}{p}",
        "product_title": f"title {p}",
        "esci_label": "ESCI"[p % 4],
        "split": ("train", "validation", "test")[q % 3],
    }
    for q in range(6)
    for p in range(4)
]


def _baseline_exit(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["baseline", "--data", str(path)])
    lines = capsys.readouterr().err.strip().splitlines()
    return code, lines


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_each_file_format_loads_grouped_by_query(tmp_path: Path, suffix: str):
    path = tmp_path / f"esci{suffix}"
    write_rows(ROWS, path)
    data = load_data(str(path))
    assert [len(data.split(name)) for name in ("train", "validation", "test")] == [2, 2, 2]
    group = data.split("train")[0]
    assert group.query == "query 0" and group.product_ids == ("p00", "p01", "p02", "p03")
    assert group.gains == tuple(ESCI_GAINS[label] for label in "ESCI")


def test_a_directory_with_one_data_file_and_numeric_gains_load(tmp_path: Path):
    rows = [{**{k: v for k, v in row.items() if k != "esci_label"}, "gain": "0.5"} for row in ROWS]
    write_rows(rows, tmp_path / "data.csv")
    assert load_data(str(tmp_path)).split("test")[0].gains == (0.5, 0.5, 0.5, 0.5)


def test_without_a_split_column_queries_are_split_by_id(tmp_path: Path):
    rows = [{**row, "query_id": f"q{i // 4}", "split": None} for i, row in enumerate(ROWS * 10)]
    path = tmp_path / "esci.jsonl"
    write_rows([{k: v for k, v in row.items() if k != "split"} for row in rows], path)
    data = load_data(str(path))
    assert sum(len(data.split(name)) for name in ("train", "validation", "test")) == 60


def _write(path: Path, rows: list[dict]) -> Path:
    write_rows(rows, path)
    return path


BAD_DATA = {
    "missing file": (lambda d: d / "absent.parquet", "no such file"),
    "unsupported type": (lambda d: (d / "esci.txt").write_text("x") and d / "esci.txt", "unsupported file type"),
    "empty csv": (lambda d: (d / "esci.csv").write_text("") or d / "esci.csv", "has no rows"),
    "empty parquet": (
        lambda d: pq.write_table(pa.table({"query_id": pa.array([], pa.string())}), d / "e.parquet") or d / "e.parquet",
        "has no rows",
    ),
    "corrupt parquet": (lambda d: (d / "bad.parquet").write_bytes(b"PAR1 junk") and d / "bad.parquet", "cannot read"),
    "bad json line": (lambda d: (d / "bad.jsonl").write_text('{"query_id": 1}\n{oops\n') and d / "bad.jsonl", "line 2"),
    "missing column": (
        lambda d: _write(d / "esci.csv", [{k: v for k, v in r.items() if k != "product_title"} for r in ROWS]),
        "missing required column(s) product_title",
    ),
    "no judgement column": (
        lambda d: _write(d / "esci.csv", [{k: v for k, v in r.items() if k != "esci_label"} for r in ROWS]),
        "needs an esci_label column",
    ),
    "unknown label": (
        lambda d: _write(d / "esci.jsonl", [*ROWS[:5], {**ROWS[5], "esci_label": "X"}, *ROWS[6:]]),
        "row 6: unknown esci_label 'X'",
    ),
    "empty split": (
        lambda d: _write(
            d / "esci.parquet", [{**r, "split": "train" if r["split"] == "test" else r["split"]} for r in ROWS]
        ),
        "the test split has no queries",
    ),
    "unknown split": (
        lambda d: _write(d / "esci.csv", [{**r, "split": "dev"} for r in ROWS]),
        "unknown split 'dev'",
    ),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_ends_with_one_line_naming_the_file_and_exit_2(tmp_path, capsys, case):
    make, problem = BAD_DATA[case]
    path = make(tmp_path)
    code, lines = _baseline_exit(path, capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert str(path) in lines[0] and problem in lines[0]


def test_a_bad_synthetic_spec_is_reported_like_bad_data(capsys):
    assert main(["train", "--data", "synthetic:queries=many"]) == 2
    assert "synthetic:queries=many: queries must be an integer" in capsys.readouterr().err


def test_the_console_script_reports_bad_data_without_a_traceback(tmp_path: Path):
    path = tmp_path / "esci.jsonl"
    path.write_text(json.dumps({"query": "x"}) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "ktune_trainer.cli", "train", "--data", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"ktune-trainer train: {path}: missing required column(s) query_id, product_id, product_title"
    )
