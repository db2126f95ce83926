"""Loading a reference (or current) dataset and deciding which of its columns are features."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kubeforge_crds.contracts.drift import FeatureConfig
from kubeforge_runtimes.drift import stats
from kubeforge_runtimes.drift.text import TextReference

# A string column with more distinct values than this is free text or an identifier, not a
# category: not monitored when features are inferred (list it in spec.features to monitor it).
MAX_CATEGORIES = 100


class ReferenceError(ValueError):
    """The reference cannot be used (unreadable, or its columns do not match the features)."""


def read_table(uri: str, fmt: str | None = None) -> pd.DataFrame:
    """A JSONL, CSV or Parquet file from a local path, ``file://``, ``pvc://`` or ``s3://``."""
    from kubeforge_pipelines.data import DatasetError, infer_format
    from kubeforge_pipelines.storage import StorageError, fetch_file

    try:
        with tempfile.TemporaryDirectory(prefix="kubeforge-drift-") as tmp:
            path = fetch_file(uri if "://" in uri else f"file://{Path(uri).resolve()}", Path(tmp))
            kind = infer_format(str(path), fmt)
            if kind == "jsonl":
                return pd.read_json(path, lines=True)
            if kind == "csv":
                return pd.read_csv(path)
            return pd.read_parquet(path)
    except (DatasetError, StorageError, OSError) as err:
        raise ReferenceError(f"cannot read {uri}: {err}") from err
    except ValueError as err:
        raise ReferenceError(f"cannot parse {uri}: {err}") from err


def infer_features(frame: pd.DataFrame) -> tuple[list[FeatureConfig], list[str]]:
    """Features from a table's columns: numbers are numeric, strings and booleans categorical;
    free text (more than MAX_CATEGORIES distinct strings) and integer row identifiers (unique in
    every row) are left out. Returns the features and the columns left out."""
    features: list[FeatureConfig] = []
    skipped: list[str] = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            features.append(FeatureConfig(name=str(column), type="categorical"))
        elif pd.api.types.is_integer_dtype(series) and len(series) > 1 and series.is_unique:
            skipped.append(str(column))  # a row identifier, not a feature
        elif pd.api.types.is_numeric_dtype(series):
            features.append(FeatureConfig(name=str(column), type="numeric"))
        else:
            if series.astype(str).nunique() > MAX_CATEGORIES:
                skipped.append(str(column))
            else:
                features.append(FeatureConfig(name=str(column), type="categorical"))
    return features, skipped


def check_columns(frame: pd.DataFrame, features: list[FeatureConfig], uri: str) -> None:
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise ReferenceError(
            f"the reference {uri} has no column {', '.join(repr(m) for m in missing)} "
            f"(its columns: {', '.join(map(str, frame.columns))}); fix spec.features or the "
            "reference"
        )
    for f in features:
        if (
            f.type == "text"
            and not frame[f.name].map(lambda v: v is None or isinstance(v, str)).all()
        ):
            raise ReferenceError(
                f"feature {f.name!r} is declared text but the reference's column holds "
                f"{frame[f.name].dtype} values such as {frame[f.name].iloc[0]!r}"
            )
        if f.type == "numeric" and not pd.api.types.is_numeric_dtype(frame[f.name]):
            raise ReferenceError(
                f"feature {f.name!r} is declared numeric but the reference's column holds "
                f"{frame[f.name].dtype} values such as {frame[f.name].iloc[0]!r}"
            )


@dataclass(frozen=True)
class Summary:
    """Each feature's reference summary."""

    numeric: dict[str, stats.NumericReference]
    categorical: dict[str, stats.CategoricalReference]
    rows: int
    text: dict[str, TextReference] = field(default_factory=dict)


def summarise(frame: pd.DataFrame, features: list[FeatureConfig]) -> Summary:
    numeric: dict[str, stats.NumericReference] = {}
    categorical: dict[str, stats.CategoricalReference] = {}
    text: dict[str, TextReference] = {}
    for f in features:
        if f.type == "numeric":
            numeric[f.name] = stats.NumericReference.build(
                frame[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
            )
        elif f.type == "text":
            text[f.name] = TextReference.build(frame[f.name].tolist())
        else:
            categorical[f.name] = stats.CategoricalReference.build(frame[f.name].dropna())
    return Summary(numeric=numeric, categorical=categorical, rows=len(frame), text=text)
