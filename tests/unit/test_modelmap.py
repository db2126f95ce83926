"""The model map's pure parts: entries for registered, running, deleted and URI-served models,
costs as GPU-hours times the price of their product, the warnings about prices, and the CSV
export (parsed back, formulas defused)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from kubeforge_api.modelmap import (
    Prices,
    Usage,
    compute_costs,
    namespace_map,
    price_warnings,
    to_csv,
)

NS = "team-a"
A100 = "NVIDIA-A100-SXM4-80GB"


def _obj(kind: str, name: str, spec: Any = None, status: Any = None) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name}, "spec": spec or {}, "status": status or {}}


CARD = {"purpose": '=HYPERLINK("http://x")', "owner": "team-support", "license": "Apache-2.0"}
FTJS = [
    _obj(
        "FineTuneJob",
        "tune-v2",
        spec={"output": {"uri": "pvc://m/bot", "modelName": "bot", "card": CARD}},
        status={
            "phase": "Succeeded",
            "model": {"name": "bot", "version": "v2", "uri": "pvc://m/bot/v2"},
            "metrics": {"evalLoss": 1.2},
            "lineage": {"baseModel": "pvc://m/base", "datasetDigest": "sha256:ab"},
        },
    ),
    _obj(
        "FineTuneJob",
        "tune-v3",
        spec={"output": {"uri": "pvc://m/bot", "modelName": "bot"}},
        status={"phase": "Running"},
    ),
]
SERVERS = [
    _obj(
        "ModelServer",
        "bot",
        spec={"model": {"modelName": "bot"}},
        status={
            "phase": "Progressing",
            "inferenceService": "bot",
            "trafficSplit": "75/25",
            "stable": {"revision": "r2", "fineTuneJob": "tune-v2"},
            "canary": {"revision": "r3", "fineTuneJob": "tune-v3"},
            "rolledBack": {"revision": "r1", "fineTuneJob": "tune-v1", "uri": "pvc://m/bot/v1"},
        },
    ),
    _obj(
        "ModelServer",
        "ocr",
        spec={"model": {"uri": "s3://vendor/ocr"}, "card": {"purpose": "Reads invoices."}},
        status={"phase": "Ready", "inferenceService": "ocr"},
    ),
]
MONITORS = [
    _obj(
        "DriftMonitor",
        "watch",
        spec={"target": {"modelServer": "bot"}},
        status={
            "quality": {"scores": [{"metric": "accuracy", "value": 0.61}]},
            "conditions": [
                {"type": "QualityDegraded", "status": "True", "message": "accuracy 0.61 < 0.8"}
            ],
        },
    )
]
USAGE = Usage(
    gpu_hours={
        (NS, "FineTuneJob", "tune-v2", A100): 2.0,
        (NS, "ModelServer", "bot", ""): 10.0,
        (NS, "Workbench", "nb", A100): 1.5,
    },
    tokens={(NS, "bot"): 50_000.0},
)
PRICES = Prices({A100: 3.0, "default": 1.0, "NVIDIA-H100-TYPO": 9.0}, "EUR")


@pytest.fixture
def models() -> list[dict[str, Any]]:
    costs = compute_costs(USAGE, PRICES)
    return namespace_map(NS, FTJS, SERVERS, MONITORS, costs, USAGE)


def test_every_version_is_an_entry_with_its_card_quality_and_serving(
    models: list[dict[str, Any]],
) -> None:
    by_name = {(m["fineTuneJob"] or {}).get("name") or m["model"]: m for m in models}
    assert list(by_name) == ["tune-v2", "tune-v3", "tune-v1", "ocr"]
    v2 = by_name["tune-v2"]
    assert (v2["model"], v2["version"], v2["card"]) == ("bot", "v2", CARD)
    assert v2["evaluation"] == {"evalLoss": 1.2}
    (stable,) = v2["serving"]
    assert (stable["role"], stable["trafficPercent"]) == ("stable", 75)
    assert stable["monitors"][0]["quality"]["message"] == "accuracy 0.61 < 0.8"
    assert by_name["tune-v3"]["serving"][0]["trafficPercent"] == 25
    assert by_name["tune-v3"]["fineTuneJob"]["phase"] == "Running"
    # the rolled-back version's FineTuneJob was deleted: shown as such, not an error
    gone = by_name["tune-v1"]
    assert gone["fineTuneJob"] == {"name": "tune-v1", "phase": None, "deleted": True}
    assert (gone["uri"], gone["serving"][0]["role"]) == ("pvc://m/bot/v1", "rolledBack")
    ocr = by_name["ocr"]
    assert (ocr["source"], ocr["uri"], ocr["card"]) == (
        "uri",
        "s3://vendor/ocr",
        {"purpose": "Reads invoices."},
    )


def test_costs_are_gpu_hours_times_the_price_of_their_product(
    models: list[dict[str, Any]],
) -> None:
    v2 = models[0]
    assert v2["training"] == {"gpuHours": 2.0, "cost": 6.0}  # 2 h of A100 at 3.0
    stable = v2["serving"][0]
    assert (stable["gpuHours"], stable["cost"]) == (10.0, 10.0)  # no product: the default price
    assert stable["costPer1kTokens"] == pytest.approx(10.0 / 50)  # 50k tokens
    workbench = next(c for c in compute_costs(USAGE, PRICES) if c["kind"] == "Workbench")
    assert workbench["cost"] == pytest.approx(4.5)


def test_prices_that_price_nothing_and_gpus_without_a_price_are_said() -> None:
    warned = price_warnings(USAGE, PRICES)
    assert len(warned) == 1
    assert "'NVIDIA-H100-TYPO', which no GPU in the period had" in warned[0]
    unpriced = price_warnings(USAGE, Prices({A100: 3.0}))
    assert any("no price for GPU product(s) (no product)" in w for w in unpriced)
    cost = compute_costs(USAGE, Prices({A100: 3.0}))
    assert next(c for c in cost if c["kind"] == "ModelServer")["cost"] is None


def test_the_map_exports_as_csv_a_spreadsheet_reads_safely(models: list[dict[str, Any]]) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(models))))
    assert [r["model"] for r in rows] == ["bot", "bot", "tune-v1", "ocr"]
    assert rows[0]["purpose"] == '\'=HYPERLINK("http://x")'  # not a formula
    assert rows[0]["trainingCost"] == "6.0"
    assert rows[0]["serving"] == "bot stable 75%"
    assert rows[0]["quality"] == "watch: accuracy 0.61 < 0.8"
    assert rows[2]["fineTuneJob"] == "tune-v1 (deleted)"
    assert rows[3]["source"] == "uri"


def test_without_prometheus_costs_are_unknown_not_zero() -> None:
    unmeasured = Usage(measured=False)
    models = namespace_map(NS, FTJS, SERVERS, [], [], unmeasured)
    assert models[0]["training"] == {"gpuHours": None, "cost": None}
    assert models[0]["serving"][0]["cost"] is None
    rows = list(csv.DictReader(io.StringIO(to_csv(models))))
    assert (rows[0]["trainingCost"], rows[0]["servingCost"]) == ("", "")


def test_a_servers_cost_is_counted_once_and_its_card_describes_what_it_serves_now(
    models: list[dict[str, Any]],
) -> None:
    """bot's replicas serve tune-v2 (stable), tune-v3 (canary) and keep tune-v1 rolled back:
    its GPU-hours are on the stable row only, so that every sum counts them once."""
    rows = [(m["fineTuneJob"]["name"], s) for m in models[:3] for s in m["serving"]]
    charged = [(name, s["role"]) for name, s in rows if s["gpuHours"] is not None]
    assert charged == [("tune-v2", "stable")]
    carded = {**SERVERS[0], "spec": {**SERVERS[0]["spec"], "card": {"purpose": "Bot."}}}
    again = namespace_map(NS, FTJS, [carded], [], [], USAGE)
    cards = {m["fineTuneJob"]["name"]: (m["card"] or {}).get("purpose") for m in again}
    # the server's card stands in for what it serves now, not for what it rolled back
    assert cards == {"tune-v2": "Bot.", "tune-v3": "Bot.", "tune-v1": None}
