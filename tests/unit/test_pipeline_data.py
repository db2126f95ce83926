"""The prepare step's core: formats, row/field errors, deterministic split, digest; and the
storage URIs it reads from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from kubeforge_pipelines import data, storage


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_format_reads_the_same_rows(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(10)], "label": list(range(10))})
    path = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    prepared = data.prepare(path, None, "text", 0.2, seed=1)
    assert sorted(prepared.train + prepared.eval) == sorted(frame["text"])
    assert len(prepared.eval) == 2
    assert prepared.digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_split_is_deterministic_and_disjoint() -> None:
    texts = [f"t{i}" for i in range(100)]
    a = data.split(texts, 0.1, seed=7)
    assert a == data.split(texts, 0.1, seed=7)
    assert a != data.split(texts, 0.1, seed=8)
    assert len(a[1]) == 10
    assert not set(a[0]) & set(a[1])


def test_split_keeps_one_row_each_side() -> None:
    train, held = data.split(["a", "b"], 0.01, seed=0)
    assert len(train) == 1
    assert len(held) == 1


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"text": "ok"}', '{"txt": "x"}'], "row 2: field 'text' is missing (fields: txt)"),
        (['{"text": "ok"}', '{"text": 3}'], "row 2: field 'text' must be a string, got int"),
        (['{"text": "ok"}', '{"text": "  "}'], "row 2: field 'text' is empty"),
        (['{"text": "ok"}', "{not json"], "line 2: not valid JSON"),
        (['{"text": "ok"}', "[1, 2]"], "line 2: expected a JSON object, got list"),
        (['{"text": "ok"}'], "the dataset has 1 usable rows; at least 2 are needed"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = write_lines(tmp_path / "d.jsonl", lines)
    with pytest.raises(data.DatasetError) as err:
        data.prepare(path, None, "text", 0.1, seed=0)
    assert expected in str(err.value)


def test_many_bad_rows_are_counted_not_all_listed(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [json.dumps({"x": i}) for i in range(25)])
    with pytest.raises(data.DatasetError) as err:
        data.prepare(path, None, "text", 0.1, seed=0)
    assert len(err.value.problems) == data.MAX_ERRORS
    assert "(and 15 more)" in str(err.value)
    assert str(err.value).startswith("row 1: field 'text' is missing")


def test_unknown_extension_asks_for_the_format(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.txt", ['{"text": "a"}', '{"text": "b"}'])
    with pytest.raises(data.DatasetError, match=r"set spec.dataset.format"):
        data.prepare(path, None, "text", 0.1, seed=0)
    assert data.prepare(path, "jsonl", "text", 0.5, seed=0).rows == 2


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "\xff\xfe"}\n')
    with pytest.raises(data.DatasetError, match="not UTF-8"):
        data.prepare(path, None, "text", 0.1, seed=0)


def test_csv_that_is_not_csv_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_text("definitely not parquet")
    with pytest.raises(data.DatasetError, match="cannot read the file as parquet"):
        data.prepare(path, None, "text", 0.1, seed=0)


# --- storage -------------------------------------------------------------------------------------


def test_pvc_uris_map_under_the_mount_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEFORGE_PVC_ROOT", "/mnt/claims")
    loc = storage.parse_uri("pvc://datasets/train/a.jsonl")
    assert loc.local == Path("/mnt/claims/datasets/train/a.jsonl")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pvc:///a.jsonl", "names the claim"),
        ("s3:///key", "names the bucket"),
        ("file://host/x", "absolute path"),
        ("ftp://x/y", "unsupported scheme 'ftp'"),
        ("hf://", "names the repository"),
    ],
)
def test_bad_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(storage.StorageError, match=message):
        storage.parse_uri(uri)


def test_s3_uri_splits_bucket_and_key() -> None:
    loc = storage.parse_uri("s3://bucket/a/b.jsonl")
    assert (loc.bucket, loc.path) == ("bucket", "a/b.jsonl")


def test_missing_dataset_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(storage.StorageError, match="no such file"):
        storage.fetch_file(f"file://{tmp_path}/absent.jsonl", tmp_path)


def test_published_versions_are_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_text("1")
    uri = f"file://{tmp_path}/models/m/v1"
    storage.publish_dir(src, uri)
    assert (tmp_path / "models/m/v1/w.bin").read_text() == "1"
    with pytest.raises(storage.StorageError, match="never overwritten"):
        storage.publish_dir(src, uri)
    assert storage.list_versions(f"file://{tmp_path}/models/m") == ["v1"]
    assert storage.list_versions(f"file://{tmp_path}/models/none") == []
