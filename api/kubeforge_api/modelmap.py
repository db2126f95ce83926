"""The AI model map: every model and version the caller may read, with what it is for (its
model card), how good it is (evaluation, live quality and drift), where and how it is served
(stable, canary, rolled back, traffic, URL), where it came from (lineage) and what it costs
(GPU-hours of training and serving, priced per GPU product; per 1,000 generated tokens for
language models). Pure: the routes list the objects as the caller and measure usage in
Prometheus; nothing here talks to a cluster.

One entry per model version: a FineTuneJob's output (registered, or still being trained), a
version whose FineTuneJob was deleted (its ModelServer still names it: shown as deleted), and a
model a ModelServer serves by URI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeforge_api.catalog import drift_view

ROLES = ("stable", "canary", "rolledBack")
DEFAULT_PRICE = "default"  # the price of a GPU whose product has none of its own


@dataclass(frozen=True)
class Usage:
    """What Prometheus measured over the period: GPU-hours per (namespace, kind, name,
    product) from the operator's ``kubeforge_object_gpus``, and tokens generated per
    (namespace, model name) from the LLM runtimes' ``vllm:generation_tokens_total``."""

    gpu_hours: Mapping[tuple[str, str, str, str], float] = field(default_factory=dict)
    tokens: Mapping[tuple[str, str], float] = field(default_factory=dict)
    measured: bool = True  # False: no Prometheus, every cost unknown (not zero)


@dataclass(frozen=True)
class Prices:
    per_gpu_hour: Mapping[str, float]
    currency: str = "USD"

    def of(self, product: str) -> float | None:
        return self.per_gpu_hour.get(product, self.per_gpu_hour.get(DEFAULT_PRICE))


def compute_costs(usage: Usage, prices: Prices) -> list[dict[str, Any]]:
    """Every object that held GPUs in the period: its GPU-hours and their price."""
    out = []
    for (namespace, kind, name, product), hours in sorted(usage.gpu_hours.items()):
        price = prices.of(product)
        out.append(
            {
                "namespace": namespace,
                "kind": kind,
                "name": name,
                "product": product or None,
                "gpuHours": hours,
                "pricePerGpuHour": price,
                "cost": None if price is None else hours * price,
            }
        )
    return out


def price_warnings(usage: Usage, prices: Prices) -> list[str]:
    """Prices that price nothing (a product no GPU in the period had: a typo, or an old
    product), and GPU-hours that no price covers."""
    seen = {product for (_, _, _, product) in usage.gpu_hours}
    warnings = [
        f"a price is set for GPU product {product!r}, which no GPU in the period had "
        f"(products seen: {', '.join(sorted(p or '(none)' for p in seen)) or 'none'}); "
        "check its name against the nodes' nvidia.com/gpu.product label"
        for product in sorted(prices.per_gpu_hour)
        if product != DEFAULT_PRICE and product not in seen
    ]
    unpriced = sorted({p or "(no product)" for p in seen if prices.of(p) is None})
    if unpriced:
        warnings.append(
            f"no price for GPU product(s) {', '.join(unpriced)}: their cost is unknown; set "
            f"them (or {DEFAULT_PRICE!r}) in the API's gpu_prices"
        )
    return warnings


def _spent(
    costs: list[dict[str, Any]], namespace: str, kind: str, name: str, measured: bool = True
) -> dict[str, Any]:
    if not measured:
        return {"gpuHours": None, "cost": None}
    mine = [c for c in costs if (c["namespace"], c["kind"], c["name"]) == (namespace, kind, name)]
    known = [c["cost"] for c in mine]
    return {
        "gpuHours": sum(c["gpuHours"] for c in mine),
        "cost": None if None in known else sum(known),
    }


def _serving(
    server: dict[str, Any],
    role: str,
    costs: list[dict[str, Any]],
    usage: Usage,
    monitors: list[dict[str, Any]],
    charged: bool = True,
) -> dict[str, Any]:
    """One role of a ModelServer for one version. The server's GPU-hours and cost go on one
    row only (``charged``: its stable version's, else its first): its replicas serve the
    versions together, and a cost counted twice would be wrong in every sum."""
    status = server.get("status") or {}
    namespace, name = server["metadata"]["namespace"], server["metadata"]["name"]
    spent = (
        _spent(costs, namespace, "ModelServer", name, usage.measured)
        if charged
        else {"gpuHours": None, "cost": None}
    )
    tokens = (
        usage.tokens.get((namespace, str(status.get("inferenceService") or name)))
        if charged
        else None
    )
    split = str(status.get("trafficSplit") or "")
    stable_share, _, canary_share = split.partition("/")
    share = {"stable": stable_share, "canary": canary_share}.get(role) or None
    return {
        "modelServer": name,
        "role": role,
        "phase": status.get("phase"),
        "trafficPercent": int(share) if share and share.isdigit() else None,
        "url": status.get("url"),
        **spent,
        "tokens": tokens,
        "costPer1kTokens": (
            spent["cost"] / tokens * 1000 if tokens and spent["cost"] is not None else None
        ),
        "monitors": [
            drift_view(m)
            for m in monitors
            if ((m.get("spec") or {}).get("target") or {}).get("modelServer") == name
        ],
    }


def _served_versions(server: dict[str, Any]) -> dict[str, list[str]]:
    """FineTuneJob -> the roles in which the ModelServer serves its output ("asked" while the
    spec names a FineTuneJob nothing serves yet)."""
    status = server.get("status") or {}
    out: dict[str, list[str]] = {}
    for role in ROLES:
        ftj = (status.get(role) or {}).get("fineTuneJob")
        if ftj:
            out.setdefault(str(ftj), []).append(role)
    asked = ((server.get("spec") or {}).get("model") or {}).get("fineTuneJob")
    if asked and asked not in out:
        out[str(asked)] = ["asked"]
    return out


def _ftj_entry(
    namespace: str, ftj: dict[str, Any], costs: list[dict[str, Any]], measured: bool
) -> dict[str, Any]:
    status = ftj.get("status") or {}
    spec = ftj.get("spec") or {}
    lineage = status.get("lineage") or {}
    model = status.get("model") or {}
    name = ftj["metadata"]["name"]
    return {
        "namespace": namespace,
        "model": model.get("name") or (spec.get("output") or {}).get("modelName") or name,
        "version": model.get("version"),
        "uri": model.get("uri"),
        "source": "fineTuneJob",
        "fineTuneJob": {"name": name, "phase": status.get("phase"), "deleted": False},
        "card": (spec.get("output") or {}).get("card"),
        "baseModel": lineage.get("baseModel") or (spec.get("baseModel") or {}).get("uri"),
        "dataset": {
            "uri": lineage.get("datasetUri") or (spec.get("dataset") or {}).get("uri"),
            "digest": lineage.get("datasetDigest") or status.get("datasetDigest"),
        },
        "evaluation": status.get("metrics"),
        "training": _spent(costs, namespace, "FineTuneJob", name, measured),
        "serving": [],
    }


def _deleted_entry(
    namespace: str, ftj_name: str, server: dict[str, Any], costs: list[dict[str, Any]], usage: Usage
) -> dict[str, Any]:
    status = server.get("status") or {}
    revision: dict[str, Any] = next(
        (status[r] for r in ROLES if (status.get(r) or {}).get("fineTuneJob") == ftj_name), {}
    )
    return {
        "namespace": namespace,
        "model": ftj_name,
        "version": None,
        "uri": revision.get("uri"),
        "source": "fineTuneJob",
        "fineTuneJob": {"name": ftj_name, "phase": None, "deleted": True},
        "card": None,
        "baseModel": None,
        "dataset": None,
        "evaluation": None,
        # its GPU-hours stay in Prometheus after it is gone
        "training": _spent(costs, namespace, "FineTuneJob", ftj_name, usage.measured),
        "serving": [],
    }


def _uri_entry(namespace: str, server: dict[str, Any]) -> dict[str, Any]:
    asked = (server.get("spec") or {}).get("model") or {}
    return {
        "namespace": namespace,
        "model": server["metadata"]["name"],
        "version": None,
        "uri": asked.get("uri"),
        "source": "uri",
        "fineTuneJob": None,
        "card": None,
        "baseModel": None,
        "dataset": None,
        "evaluation": None,
        "training": None,
        "serving": [],
    }


def namespace_map(
    namespace: str,
    ftjs: list[dict[str, Any]],
    servers: list[dict[str, Any]],
    monitors: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    usage: Usage,
) -> list[dict[str, Any]]:
    """The entries of one namespace, in the order: FineTuneJobs by name, deleted ones, models
    served by URI. A ModelServer's own card stands in for the card of what it serves."""
    for obj in (*servers, *ftjs):
        obj["metadata"].setdefault("namespace", namespace)
    entries = {f["metadata"]["name"]: _ftj_entry(namespace, f, costs, usage.measured) for f in ftjs}
    deleted: dict[str, dict[str, Any]] = {}
    by_uri = []
    carded: set[str] = set()  # versions whose card a ModelServer's stands in for
    for server in sorted(servers, key=lambda s: str(s["metadata"]["name"])):
        card = (server.get("spec") or {}).get("card")
        if ((server.get("spec") or {}).get("model") or {}).get("uri"):
            entry = _uri_entry(namespace, server)
            entry["card"] = card
            entry["serving"].append(_serving(server, "stable", costs, usage, monitors))
            by_uri.append(entry)
            continue
        served = _served_versions(server)
        charge = next(((f, "stable") for f, roles in served.items() if "stable" in roles), None)
        if charge is None and served:
            ftj_name, roles = next(iter(served.items()))
            charge = (ftj_name, roles[0])
        for ftj_name, roles in served.items():
            if ftj_name in entries:
                entry = entries[ftj_name]
            else:
                entry = deleted.setdefault(
                    ftj_name, _deleted_entry(namespace, ftj_name, server, costs, usage)
                )
            # the server's card describes what it serves now (the first server's, by name)
            if card and ftj_name not in carded and {"stable", "canary"} & set(roles):
                entry["card"] = card
                carded.add(ftj_name)
            for role in roles:
                charged = (ftj_name, role) == charge
                entry["serving"].append(_serving(server, role, costs, usage, monitors, charged))
    return [*(entries[k] for k in sorted(entries)), *deleted.values(), *by_uri]


CSV_COLUMNS = (
    "namespace",
    "model",
    "version",
    "source",
    "fineTuneJob",
    "purpose",
    "intendedUse",
    "limitations",
    "owner",
    "license",
    "baseModel",
    "evaluation",
    "serving",
    "drift",
    "quality",
    "trainingGpuHours",
    "trainingCost",
    "servingGpuHours",
    "servingCost",
    "costPer1kTokens",
)


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(entry: dict[str, Any]) -> list[str]:
    card = entry.get("card") or {}
    serving = entry.get("serving") or []
    monitors = [m for s in serving for m in s.get("monitors") or []]
    ftj = entry.get("fineTuneJob") or {}
    training = entry.get("training") or {}
    charged = [s for s in serving if s.get("gpuHours") is not None]
    known = [s["cost"] for s in charged]
    per_1k = [s["costPer1kTokens"] for s in serving if s.get("costPer1kTokens") is not None]
    values = {
        "namespace": entry["namespace"],
        "model": entry["model"],
        "version": entry.get("version"),
        "source": entry["source"],
        "fineTuneJob": (ftj.get("name", "") + (" (deleted)" if ftj.get("deleted") else "")) or None,
        "purpose": card.get("purpose"),
        "intendedUse": card.get("intendedUse"),
        "limitations": card.get("limitations"),
        "owner": card.get("owner"),
        "license": card.get("license"),
        "baseModel": entry.get("baseModel"),
        "evaluation": json.dumps(entry["evaluation"], sort_keys=True)
        if entry.get("evaluation")
        else None,
        "serving": "; ".join(
            f"{s['modelServer']} {s['role']}"
            + (f" {s['trafficPercent']}%" if s.get("trafficPercent") is not None else "")
            for s in serving
        ),
        "drift": "; ".join(
            f"{m['name']}: {(m.get('drift') or {}).get('status')}" for m in monitors
        ),
        "quality": "; ".join(
            f"{m['name']}: {(m.get('quality') or {}).get('message')}"
            for m in monitors
            if m.get("quality")
        ),
        "trainingGpuHours": training.get("gpuHours"),
        "trainingCost": training.get("cost"),
        "servingGpuHours": sum(s["gpuHours"] for s in charged) if charged else None,
        "servingCost": None if not charged or None in known else sum(known),
        "costPer1kTokens": per_1k[0] if per_1k else None,
    }
    return [_cell(values[c]) for c in CSV_COLUMNS]


def to_csv(models: list[dict[str, Any]]) -> str:
    """The map's entries as CSV, one row per model version, with a header."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(e) for e in models)
    return out.getvalue()
