"""Ranking data: ESCI-style files (Parquet, CSV, JSONL) or the synthetic generator, grouped by query.

Columns (ESCI names): ``query_id, query, product_id, product_title`` are required;
``product_description, product_bullet_point, product_brand, product_color`` are optional;
judgements come from ``esci_label`` (E/S/C/I, or Exact/Substitute/Complement/Irrelevant) or a
numeric ``gain``; an optional ``split`` (train/validation/test) assigns queries to splits,
otherwise queries are split 70/15/15 by a hash of their id.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktune_trainer import synthetic

REQUIRED_COLUMNS = ("query_id", "query", "product_id", "product_title")
TEXT_COLUMNS = ("product_title", "product_brand", "product_color", "product_bullet_point", "product_description")
ESCI_GAINS = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
LABEL_ALIASES = {"exact": "E", "substitute": "S", "complement": "C", "irrelevant": "I"}
SPLITS = ("train", "validation", "test")
FILE_SUFFIXES = (".parquet", ".csv", ".jsonl")
SYNTHETIC_PREFIX = "synthetic:"


class DataError(ValueError):
    """Bad ranking data; the message names the file (or spec) and the problem in one line."""


@dataclass(frozen=True)
class QueryGroup:
    """One query with its judged products (the unit of ranking and of listwise loss)."""

    query_id: str
    query: str
    product_ids: tuple[str, ...]
    product_texts: tuple[str, ...]
    gains: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.product_ids)


@dataclass(frozen=True)
class RankingData:
    source: str
    splits: Mapping[str, tuple[QueryGroup, ...]]

    def split(self, name: str) -> tuple[QueryGroup, ...]:
        return self.splits[name]

    def pair_count(self, name: str) -> int:
        return sum(len(group) for group in self.splits[name])


def load_data(spec: str) -> RankingData:
    """Loads `spec`: a file, a directory holding one data file, or ``synthetic:queries=N,seed=S``."""
    if spec.startswith(SYNTHETIC_PREFIX):
        queries, seed = parse_synthetic_spec(spec)
        return rows_to_data(synthetic.generate(queries, seed), spec)
    path = resolve_data_path(spec)
    return rows_to_data(read_rows(path), str(path))


def parse_synthetic_spec(spec: str) -> tuple[int, int]:
    """``synthetic:queries=400,seed=1`` → (400, 1); both keys optional (defaults 400 and 1)."""
    values = {"queries": 400, "seed": 1}
    body = spec.removeprefix(SYNTHETIC_PREFIX).strip()
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in values or not raw.strip():
            raise DataError(f"{spec}: expected synthetic:queries=N,seed=S, got {item!r}")
        try:
            values[key] = int(raw)
        except ValueError:
            raise DataError(f"{spec}: {key} must be an integer, got {raw.strip()!r}") from None
    if values["queries"] < 10:
        raise DataError(f"{spec}: queries must be at least 10 to fill train, validation and test")
    return values["queries"], values["seed"]


def resolve_data_path(spec: str) -> Path:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FILE_SUFFIXES)
        if len(files) != 1:
            raise DataError(
                f"{path}: expected exactly one {'/'.join(FILE_SUFFIXES)} file in the directory, found {len(files)}"
            )
        path = files[0]
    if not path.is_file():
        raise DataError(f"{path}: no such file (give a .parquet, .csv or .jsonl file, or synthetic:queries=N,seed=S)")
    if path.suffix not in FILE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .parquet, .csv or .jsonl")
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a Parquet, CSV or JSONL file as dicts; unreadable files raise DataError."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        elif path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        else:
            rows = _read_jsonl(path)
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read: {error}") from None
    except Exception as error:  # pyarrow raises its own types for corrupt Parquet
        raise DataError(f"{path}: cannot read as {path.suffix[1:]}: {str(error).splitlines()[0]}") from None
    if not rows:
        raise DataError(f"{path}: the file has no rows")
    return rows


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {number} is not JSON: {error.msg}") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            rows.append(row)
    return rows


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def product_text(row: Mapping[str, Any]) -> str:
    """What the model reads about a product: title first, then brand, color, bullets, description."""
    return " ".join(text for text in (_text(row.get(column)) for column in TEXT_COLUMNS) if text)


def _gain(row: Mapping[str, Any], source: str, number: int) -> float:
    if "esci_label" in row and _text(row["esci_label"]):
        raw = _text(row["esci_label"])
        label = LABEL_ALIASES.get(raw.lower(), raw.upper())
        if label not in ESCI_GAINS:
            raise DataError(f"{source}: row {number}: unknown esci_label {raw!r} (expected E, S, C or I)")
        return ESCI_GAINS[label]
    raw = _text(row.get("gain"))
    try:
        gain = float(raw)
    except ValueError:
        raise DataError(
            f"{source}: row {number}: needs an esci_label (E/S/C/I) or a numeric gain, got {raw!r}"
        ) from None
    if not math.isfinite(gain) or gain < 0:
        raise DataError(f"{source}: row {number}: gain must be a finite number >= 0, got {raw!r}")
    return gain


def _hash_split(query_id: str) -> str:
    bucket = int(hashlib.sha256(query_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 70 else "validation" if bucket < 85 else "test"


def rows_to_data(rows: Iterable[Mapping[str, Any]], source: str) -> RankingData:
    """Validates rows and groups them by query into train/validation/test."""
    rows = list(rows)
    if not rows:
        raise DataError(f"{source}: the data has no rows")
    columns = set().union(*(row.keys() for row in rows))
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise DataError(f"{source}: missing required column(s) {', '.join(missing)}")
    if "esci_label" not in columns and "gain" not in columns:
        raise DataError(f"{source}: needs an esci_label column (E/S/C/I) or a numeric gain column")
    has_split = "split" in columns

    grouped: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, start=1):
        for column in REQUIRED_COLUMNS:
            if not _text(row.get(column)):
                raise DataError(f"{source}: row {number}: {column} is empty")
        query_id = _text(row["query_id"])
        split = _text(row.get("split")).lower() if has_split else _hash_split(query_id)
        if split not in SPLITS:
            raise DataError(f"{source}: row {number}: unknown split {split!r} (expected train, validation or test)")
        group = grouped.setdefault(
            query_id, {"query": _text(row["query"]), "split": split, "ids": [], "texts": [], "gains": []}
        )
        if group["query"] != _text(row["query"]) or group["split"] != split:
            raise DataError(f"{source}: row {number}: query_id {query_id!r} has differing query text or split")
        group["ids"].append(_text(row["product_id"]))
        group["texts"].append(product_text(row))
        group["gains"].append(_gain(row, source, number))

    splits: dict[str, list[QueryGroup]] = {name: [] for name in SPLITS}
    for query_id, group in grouped.items():
        splits[group["split"]].append(
            QueryGroup(query_id, group["query"], tuple(group["ids"]), tuple(group["texts"]), tuple(group["gains"]))
        )
    for name in SPLITS:
        if not splits[name]:
            fix = "assign some queries to it" if has_split else "add more queries"
            raise DataError(f"{source}: the {name} split has no queries ({fix})")
    return RankingData(source, {name: tuple(groups) for name, groups in splits.items()})


def write_rows(rows: list[dict[str, str]], path: Path) -> None:
    """Writes rows as Parquet, CSV or JSONL, chosen by the file suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        with path.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
