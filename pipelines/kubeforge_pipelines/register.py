"""The register step: a model version directory with the adapter (or model), an optional merged
model, a model card and a lineage record, published to the output URI as ``<uri>/<version>``.

Layout of a version (what the ModelServer runtime and the catalog read):

    v3/
      adapter/ or model/     the trained weights and tokenizer (save_pretrained)
      merged/                the base merged with the adapter (if asked)
      lineage.json           base model, dataset digest, hyperparameters, metrics, run, version
      metrics.json           the evaluation metrics
      README.md              the model card
"""

from __future__ import annotations

import html
import json
import re
import shutil
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from kubeforge_crds.base import serialize_datetime
from kubeforge_pipelines import storage

LINEAGE = "lineage.json"
METRICS = "metrics.json"
_VERSION = re.compile(r"^v(\d+)$")


def kubeforge_version() -> str:
    try:
        return metadata.version("kubeforge")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def next_version(existing: list[str]) -> str:
    numbers = [int(m.group(1)) for v in existing if (m := _VERSION.match(v))]
    return f"v{max(numbers, default=0) + 1}"


def lineage_record(
    *,
    model_name: str,
    version: str,
    uri: str,
    base_model: str,
    dataset: dict[str, Any],
    method: str,
    hyperparameters: dict[str, Any],
    metrics: dict[str, float],
    metrics_before: dict[str, float],
    run: dict[str, Any],
    card: dict[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    return {
        "card": dict(card or {}),
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelLineage",
        "model": {"name": model_name, "version": version, "uri": uri},
        "baseModel": base_model,
        "dataset": dataset,
        "method": method,
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "metricsBefore": metrics_before,
        "run": run,
        "kubeforgeVersion": kubeforge_version(),
        "createdAt": serialize_datetime(now or datetime.now(UTC)),
    }


def model_card(lineage: dict[str, Any]) -> str:
    m = lineage["metrics"]
    before = lineage.get("metricsBefore") or {}
    rows = "\n".join(
        f"| {k} | {before.get(k, '')} | {v} |" for k, v in sorted(m.items()) if k != "evalTokens"
    )
    hp = "\n".join(f"- {k}: {v}" for k, v in sorted(lineage["hyperparameters"].items()))
    ds = lineage["dataset"]
    run = lineage["run"]
    return f"""# {lineage["model"]["name"]} {lineage["model"]["version"]}

Fine-tuned by kubeforge {lineage["kubeforgeVersion"]} on {lineage["createdAt"]}.

- Base model: `{lineage["baseModel"]}`
- Method: {lineage["method"]}
- Dataset: `{ds.get("uri")}` (sha256 `{ds.get("sha256")}`, {ds.get("trainRows")} training rows,
  {ds.get("evalRows")} held out)
- Run: {run.get("backend")} `{run.get("id")}`{_job(run)}

## Evaluation (held-out split)

| metric | base model | this version |
|---|---|---|
{rows}

## Hyperparameters

{hp}

{_declared(lineage.get("card") or {})}"""


CARD_SECTIONS = (
    ("purpose", "Purpose"),
    ("intendedUse", "Intended use"),
    ("limitations", "Limitations"),
    ("owner", "Owner"),
    ("license", "Licence"),
)


def _declared(card: dict[str, str]) -> str:
    """The owners' part of the card (the FineTuneJob's spec.output.card), as Markdown
    sections; the fixed caution when they said nothing of its use and limits."""
    parts = [
        f"## {title}\n\n{_quoted(card[key])}\n" for key, title in CARD_SECTIONS if card.get(key)
    ]
    if not card.get("intendedUse") and not card.get("limitations"):
        parts.append(
            "## Intended use and limits\n\nEvaluated only on the held-out split of the dataset "
            "above; check it on your own data before use.\n"
        )
    return "\n".join(parts)


def _quoted(text: str) -> str:
    """Declared text as a Markdown quote: HTML escaped, every line quoted, so that it can add
    no heading, table or markup of its own to the card."""
    return "\n".join(f"> {html.escape(line.strip())}" for line in text.strip().splitlines())


def _job(run: dict[str, Any]) -> str:
    job = run.get("fineTuneJob")
    return f", FineTuneJob {job['namespace']}/{job['name']}" if job else ""


def register(
    *,
    trained_dir: Path,
    output_uri: str,
    lineage_fields: dict[str, Any],
    merged_dir: Path | None = None,
    model_dir_name: str = "adapter",
) -> dict[str, Any]:
    """Publish a new version under ``output_uri``; returns its lineage record."""
    version = next_version(storage.list_versions(output_uri))
    uri = f"{output_uri.rstrip('/')}/{version}"
    lineage = lineage_record(version=version, uri=uri, **lineage_fields)
    with tempfile.TemporaryDirectory(prefix="kubeforge-register-") as tmp:
        staging = Path(tmp) / version
        shutil.copytree(trained_dir, staging / model_dir_name)
        if merged_dir is not None:
            shutil.copytree(merged_dir, staging / "merged")
        (staging / LINEAGE).write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
        (staging / METRICS).write_text(json.dumps(lineage["metrics"], indent=2, sort_keys=True))
        (staging / "README.md").write_text(model_card(lineage))
        storage.publish_dir(staging, uri)
    return lineage
