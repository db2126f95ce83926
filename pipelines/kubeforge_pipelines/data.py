"""The prepare step's pure core: read a dataset (JSONL, CSV or Parquet), validate every row,
split it deterministically and record its SHA-256.

Validation names the row and the field, so that a data scientist can fix the file: "row 17
(line 17): field 'text' is missing". Rows are numbered from 1 in the order of the file.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "csv", "parquet")
_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_EXTENSIONS |= {".parquet": "parquet", ".pq": "parquet"}
MAX_ERRORS = 10  # problems listed in one message; the count says how many more


class DatasetError(ValueError):
    """A dataset that cannot be used, with every problem found (up to MAX_ERRORS)."""

    def __init__(self, problems: list[str], total: int | None = None) -> None:
        self.problems = problems
        total = total if total is not None else len(problems)
        more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
        super().__init__("; ".join(problems) + more)


@dataclass(frozen=True)
class Prepared:
    train: list[str]
    eval: list[str]
    digest: str  # sha256 of the file's bytes
    rows: int


def infer_format(path: str, declared: str | None) -> str:
    if declared:
        if declared not in FORMATS:
            raise DatasetError([f"format {declared!r} is not one of {', '.join(FORMATS)}"])
        return declared
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DatasetError(
            [
                f"cannot infer the format of {Path(path).name!r} from its extension; "
                f"set spec.dataset.format to one of {', '.join(FORMATS)}"
            ]
        )
    return _EXTENSIONS[suffix]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: Path, fmt: str) -> list[dict[str, Any]]:
    """The file's rows as dicts; a row that is not an object becomes a problem, not a crash."""
    problems: list[str] = []
    total = 0
    records: list[dict[str, Any]] = []
    if fmt == "jsonl":
        with path.open(encoding="utf-8", errors="strict") as fh:
            try:
                lines = fh.read().splitlines()
            except UnicodeDecodeError as err:
                raise DatasetError([f"the file is not UTF-8 text: {err}"]) from err
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                total += 1
                if len(problems) < MAX_ERRORS:
                    problems.append(f"line {lineno}: not valid JSON ({err.msg})")
                continue
            if not isinstance(value, dict):
                total += 1
                if len(problems) < MAX_ERRORS:
                    problems.append(
                        f"line {lineno}: expected a JSON object, got {type(value).__name__}"
                    )
                continue
            records.append(value)
    else:
        import pandas as pd

        try:
            frame = (
                pd.read_csv(path, dtype=str, keep_default_na=False)
                if fmt == "csv"
                else pd.read_parquet(path)
            )
        except Exception as err:
            raise DatasetError([f"cannot read the file as {fmt}: {err}"]) from err
        records = frame.to_dict(orient="records")
    if problems:
        raise DatasetError(problems, total)
    return records


def validate_texts(records: list[dict[str, Any]], text_field: str) -> list[str]:
    """The text of each row; every row without a non-empty string in ``text_field`` is named."""
    problems: list[str] = []
    total = 0
    texts: list[str] = []
    for row, record in enumerate(records, 1):
        value = record.get(text_field)
        problem = None
        if text_field not in record:
            known = ", ".join(sorted(map(str, record))[:8]) or "none"
            problem = f"row {row}: field {text_field!r} is missing (fields: {known})"
        elif not isinstance(value, str):
            problem = (
                f"row {row}: field {text_field!r} must be a string, got {type(value).__name__}"
            )
        elif not value.strip():
            problem = f"row {row}: field {text_field!r} is empty"
        if problem:
            total += 1
            if len(problems) < MAX_ERRORS:
                problems.append(problem)
        else:
            texts.append(str(value))
    if problems:
        raise DatasetError(problems, total)
    if len(texts) < 2:
        raise DatasetError([f"the dataset has {len(texts)} usable rows; at least 2 are needed"])
    return texts


def split(texts: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded shuffle, then the last ``eval_fraction`` (at least one row) held out."""
    if not 0 < eval_fraction < 1:
        raise DatasetError([f"eval fraction {eval_fraction} must lie strictly between 0 and 1"])
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(texts) - 1, max(1, round(len(texts) * eval_fraction)))
    train = [texts[i] for i in order[:-n_eval]]
    held = [texts[i] for i in order[-n_eval:]]
    return train, held


def prepare(
    path: Path, fmt: str | None, text_field: str, eval_fraction: float, seed: int
) -> Prepared:
    kind = infer_format(str(path), fmt)
    texts = validate_texts(read_records(path, kind), text_field)
    train, held = split(texts, eval_fraction, seed)
    return Prepared(train=train, eval=held, digest=sha256_file(path), rows=len(texts))


def write_jsonl(texts: list[str], path: Path, text_field: str = "text") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for text in texts:
            fh.write(json.dumps({text_field: text}, ensure_ascii=False) + "\n")


def read_jsonl_texts(path: Path, text_field: str = "text") -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line)[text_field] for line in fh if line.strip()]
