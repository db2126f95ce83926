"""The drift service's pure parts: CloudEvent and v1/v2 payload parsing, the window, the join of
request and response events for bias, scoring, and the HTML report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubeforge_crds.contracts.drift import FeatureConfig, MonitorConfig
from kubeforge_runtimes.drift.monitor import Monitor, Window
from kubeforge_runtimes.drift.payloads import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    PayloadError,
    parse_event,
    request_rows,
    response_outputs,
)
from kubeforge_runtimes.drift.reference import (
    ReferenceError,
    check_columns,
    infer_features,
    summarise,
)
from kubeforge_runtimes.drift.report import files_report_html

FEATURES = ["age", "tier"]


def headers(ce_type: str = REQUEST_TYPE, ce_id: str = "req-1") -> dict[str, str]:
    """The headers KServe's logger (binary content mode) sets."""
    return {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-type": ce_type,
        "ce-source": "http://localhost:9081/",
        "ce-inferenceservicename": "support-bot",
        "ce-namespace": "team-a",
        "ce-component": "predictor",
        "ce-endpoint": "support-bot-predictor",
        "content-type": "application/json",
    }


def test_parse_binary_mode_event() -> None:
    event = parse_event(headers(), json.dumps({"instances": [[1, "gold"]]}).encode())
    assert event.kind == "request"
    assert event.id == "req-1"
    assert event.inference_service == "support-bot"
    assert event.namespace == "team-a"
    assert event.body == {"instances": [[1, "gold"]]}
    assert parse_event(headers(RESPONSE_TYPE), b'{"predictions": [1]}').kind == "response"


@pytest.mark.parametrize(
    ("hdrs", "body", "reason"),
    [
        ({"content-type": "application/json"}, b"{}", "not_cloudevent"),
        (headers(), b"{not json", "not_json"),
        (headers(), b"[1, 2]", "not_json"),
        (headers("com.example.other"), b"{}", "unknown_type"),
    ],
)
def test_parse_event_rejects(hdrs: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_event(hdrs, body)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [[30, "gold"], [40, "silver"]]},
        {"instances": [{"age": 30, "tier": "gold"}, {"age": 40, "tier": "silver"}]},
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 2],
                    "datatype": "BYTES",
                    "data": [30, "gold", 40, "silver"],
                }
            ]
        },
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 2],
                    "datatype": "BYTES",
                    "data": [[30, "gold"], [40, "silver"]],
                }
            ]
        },
        {
            "inputs": [
                {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 40]},
                {"name": "tier", "shape": [2], "datatype": "BYTES", "data": ["gold", "silver"]},
            ]
        },
    ],
    ids=["v1-lists", "v1-objects", "v2-matrix", "v2-nested", "v2-per-feature"],
)
def test_request_rows_v1_and_v2(body: dict[str, Any]) -> None:
    rows = request_rows(body, FEATURES)
    assert [(r["age"], r["tier"]) for r in rows] == [(30, "gold"), (40, "silver")]


@pytest.mark.parametrize(
    ("body", "reason", "text"),
    [
        ({"instances": [[1, "gold", 3]]}, "shape_mismatch", "instances[0] has 3 values"),
        ({"instances": "x"}, "unknown_protocol", "not a list"),
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "data": [1, 2, 3]}]},
            "shape_mismatch",
            "expects [n, 2]",
        ),
        ({"something": 1}, "unknown_protocol", "neither 'instances'"),
    ],
)
def test_request_rows_errors_name_the_problem(body: dict[str, Any], reason: str, text: str) -> None:
    with pytest.raises(PayloadError) as err:
        request_rows(body, FEATURES)
    assert err.value.reason == reason
    assert text in str(err.value)


def test_response_outputs() -> None:
    assert response_outputs({"predictions": [1, 0]}) == [1, 0]
    assert response_outputs({"outputs": [{"name": "p", "data": [[1], [0]]}]}) == [1, 0]
    with pytest.raises(PayloadError):
        response_outputs({"id": "x"})


def test_window_rejects_a_bad_payload_whole_and_keeps_the_latest() -> None:
    window = Window(
        [FeatureConfig(name="age", type="numeric"), FeatureConfig(name="tier", type="categorical")],
        size=3,
    )
    window.add([{"age": 1, "tier": "a"}, {"age": 2, "tier": "b"}])
    with pytest.raises(PayloadError, match="'age': 'old' is not a number"):
        window.add([{"age": 3, "tier": "c"}, {"age": "old", "tier": "d"}])
    assert len(window) == 2  # nothing of the bad payload went in
    with pytest.raises(PayloadError, match="row 0 has no feature 'tier'"):
        window.add([{"age": 3}])
    window.add([{"age": 3, "tier": "c"}, {"age": None, "tier": 1.0}])
    assert list(window.columns["tier"]) == ["b", "c", "1"]
    assert math.isnan(window.columns["age"][-1])


def _config(**kw: Any) -> MonitorConfig:
    return MonitorConfig(name="m", reference_uri="file:///ref.jsonl", window_size=100, **kw)


def _monitor(config: MonitorConfig, rng: np.random.Generator) -> Monitor:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 5000),
            "tier": rng.choice(["gold", "silver", "bronze"], 5000),
            "group": rng.choice(["a", "b"], 5000),
        }
    )
    features = [
        FeatureConfig(name="age", type="numeric"),
        FeatureConfig(name="tier", type="categorical"),
    ]
    return Monitor(config, features, summarise(frame, features))


def test_monitor_scores_a_full_window_and_joins_responses_for_bias() -> None:
    rng = np.random.default_rng(7)
    config = _config(
        metrics={"psi": 0.2, "ks": 0.1, "unseenCategory": 0.05, "spd": 0.1, "dir": 0.8},
        bias={"protectedAttribute": "group", "privilegedValues": ["a"], "favourableOutcome": "1"},
    )
    monitor = _monitor(config, rng)
    assert monitor.evaluate() is None  # empty window: nothing to say yet
    for i in range(10):
        rows = [
            {"age": float(rng.normal(60, 10)), "tier": "gold", "group": "a" if j % 2 else "b"}
            for j in range(10)
        ]
        # the response may arrive before its request
        preds = [1 if r["group"] == "a" else 0 for r in rows]
        if i % 2:
            monitor.add_response(f"e{i}", preds)
            monitor.add_request(f"e{i}", {"instances": rows})
        else:
            monitor.add_request(f"e{i}", {"instances": rows})
            monitor.add_response(f"e{i}", preds)
    evaluation = monitor.evaluate(now=1.0)
    assert evaluation is not None
    assert evaluation.rows == 100
    got = {(s.feature, s.metric): s for s in evaluation.scores}
    assert got[("age", "ks")].crossed  # mean moved by two standard deviations
    assert got[("tier", "psi")].crossed  # only gold
    assert not got[("tier", "unseenCategory")].crossed
    assert got[("group", "spd")].value == pytest.approx(-1.0)
    assert got[("group", "dir")].value == pytest.approx(0.0)
    assert evaluation.drift
    assert evaluation.bias
    assert ("age", "chiSquare") not in got  # metrics apply to their feature type only


def test_monitor_join_rejects_mismatched_response() -> None:
    config = _config(
        metrics={"spd": 0.1},
        bias={"protectedAttribute": "group", "privilegedValues": ["a"], "favourableOutcome": "1"},
    )
    monitor = _monitor(config, np.random.default_rng(1))
    monitor.add_request("x", {"instances": [{"age": 1, "tier": "gold", "group": "a"}]})
    with pytest.raises(PayloadError, match="1 instances but 2 predictions"):
        monitor.add_response("x", [1, 0])


def test_infer_features_skips_text_and_ids() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": range(500),
            "text": [f"ticket number {i}" for i in range(500)],
            "product": ["vpn", "email"] * 250,
            "priority": [1, 2, 3, 4, 5] * 100,
            "vip": [True, False] * 250,
        }
    )
    features, skipped = infer_features(frame)
    assert [(f.name, f.type) for f in features] == [
        ("product", "categorical"),
        ("priority", "numeric"),
        ("vip", "categorical"),
    ]
    assert skipped == ["id", "text"]


def test_reference_columns_must_match_the_features() -> None:
    import pandas as pd

    frame = pd.DataFrame({"product": ["vpn"], "priority": [1]})
    with pytest.raises(
        ReferenceError, match=r"has no column 'tier'.*its columns: product, priority"
    ):
        check_columns(frame, [FeatureConfig(name="tier", type="categorical")], "s3://b/ref.csv")
    with pytest.raises(ReferenceError, match="'product' is declared numeric"):
        check_columns(frame, [FeatureConfig(name="product", type="numeric")], "s3://b/ref.csv")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_files_report_says_what_crossed(tmp_path: Path) -> None:
    from kubeforge_pipelines.tinymodel import support_tickets

    ref = _write_jsonl(tmp_path / "ref.jsonl", support_tickets(2000, seed=1))
    same = _write_jsonl(tmp_path / "same.jsonl", support_tickets(500, seed=2))
    shifted = _write_jsonl(
        tmp_path / "shifted.jsonl", support_tickets(500, seed=3, products=["vpn", "email"])
    )
    calm = files_report_html(ref, same, {"psi": 0.2, "chiSquare": 0.001})
    assert "No drift" in calm
    drifted = files_report_html(ref, shifted, {"psi": 0.2, "chiSquare": 0.001})
    assert "Drift found" in drifted
    assert "<b>product</b>: psi is" in drifted
    assert drifted.count("<svg") >= 3  # one distribution plot per feature
    assert "<script" not in drifted


def test_files_report_names_missing_columns(tmp_path: Path) -> None:
    from kubeforge_runtimes.drift.report import ReportError

    ref = _write_jsonl(tmp_path / "ref.jsonl", [{"product": "vpn", "tier": "gold"}] * 5)
    cur = _write_jsonl(tmp_path / "cur.jsonl", [{"product": "vpn"}] * 5)
    with pytest.raises(ReportError, match=r"cur\.jsonl has no column 'tier'"):
        files_report_html(ref, cur)


def test_report_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kubeforge_pipelines.tinymodel import support_tickets
    from kubeforge_runtimes.__main__ import app

    ref = _write_jsonl(tmp_path / "ref.jsonl", support_tickets(2000, seed=1))
    cur = _write_jsonl(tmp_path / "cur.jsonl", support_tickets(400, seed=2, products=["vpn"]))
    out = tmp_path / "report.html"
    runner = CliRunner()
    args = ["drift", "report", "--reference", str(ref), "--current", str(cur), "--out", str(out)]
    done = runner.invoke(app, [*args, "--metric", "psi=0.2", "--metric", "chiSquare=0.001"])
    assert done.exit_code == 0, done.output
    assert "drift found:" in done.output
    assert "product: psi" in done.output
    assert "Drift found" in out.read_text()
    bad = runner.invoke(app, [*args, "--metric", "entropy=1"])
    assert bad.exit_code == 2
    assert "METRIC one of psi" in bad.output
    broken = _write_jsonl(tmp_path / "broken.jsonl", [{"product": "vpn"}] * 5)
    missing = runner.invoke(
        app, ["drift", "report", "--reference", str(ref), "--current", str(broken)]
    )
    assert missing.exit_code == 2
    assert "has no column 'tier'" in missing.output


def _service_with_window(tmp_path: Path, **config: Any) -> Any:
    from kubeforge_runtimes.drift.service import DriftService

    reference = _write_jsonl(
        tmp_path / "train.jsonl",
        [{"id": i, "text": f"t{i}", "product": "printer" if i % 2 else "vpn"} for i in range(40)],
    )
    service = DriftService(
        MonitorConfig(name="m", reference_uri=reference.as_uri(), window_size=10, **config)
    )
    service.load()
    assert service.monitor is not None
    return service


def test_export_writes_the_reference_then_the_live_window(tmp_path: Path) -> None:
    from kubeforge_runtimes.drift.service import ExportError

    out = tmp_path / "exports"
    service = _service_with_window(tmp_path, export_dir=str(out), export_uri="pvc://data/exports")
    with pytest.raises(ExportError, match="window is empty") as empty:
        service.export("retrain-1")
    assert empty.value.code == 409
    for i in range(12):  # more than the window: the oldest two are gone
        body = {"instances": [{"text": f"live {i}", "product": "vpn", "session": "x"}]}
        service.monitor.add_request(f"e{i}", body)
    result = service.export("retrain-1")
    assert result["uri"] == "pvc://data/exports/retrain-1.jsonl"
    assert (result["referenceRows"], result["liveRows"]) == (40, 10)
    lines = (out / "retrain-1.jsonl").read_text().splitlines()
    assert len(lines) == 50
    assert json.loads(lines[0]) == {"id": 0, "text": "t0", "product": "vpn"}
    # live rows keep the reference's columns they carry (no id, no session)
    assert json.loads(lines[40]) == {"text": "live 2", "product": "vpn"}
    import hashlib

    digest = hashlib.sha256((out / "retrain-1.jsonl").read_bytes()).hexdigest()
    assert result["sha256"] == digest
    with pytest.raises(ExportError, match="DNS-1123"):
        service.export("../etc/passwd")


def test_export_without_a_location_says_which_field_to_set(tmp_path: Path) -> None:
    from kubeforge_runtimes.drift.service import ExportError

    service = _service_with_window(tmp_path)
    with pytest.raises(ExportError, match=r"spec\.actions\.retrain\.exportUri") as err:
        service.export("retrain-1")
    assert err.value.code == 501


def test_history_is_every_evaluation_oldest_first_without_the_anomaly_details(
    tmp_path: Path,
) -> None:
    service = _service_with_window(tmp_path)
    assert service.history() == {"drift": [], "quality": []}
    for i in range(10):  # a full window of vpn only: the product's share moved
        body = {"instances": [{"text": f"live {i}", "product": "vpn"}]}
        service.monitor.add_request(f"e{i}", body)
    first, second = service.evaluate(), service.evaluate()
    assert first is not None
    assert second is not None
    drift = service.history()["drift"]
    assert [e["time"] for e in drift] == [first.time, second.time]
    assert all("anomalies" not in e for e in drift)
    scores = {(s["feature"], s["metric"]): s for s in drift[-1]["scores"]}
    assert scores[("product", "psi")]["crossed"] is True
    assert scores[("product", "psi")]["threshold"] == 0.2
