"""The API's pure parts: impersonation headers, field paths of validation errors, and the
catalog, lineage and GPU views."""

from __future__ import annotations

from typing import Any

from kubeforge_api.catalog import catalog, gpu_use, lineage
from kubeforge_api.cluster import User
from kubeforge_api.errors import field_error


def test_impersonation_headers_carry_every_group_and_extra() -> None:
    user = User(
        "user-a",
        "uid-1",
        ("kubeforge:users", "system:authenticated"),
        {"scopes": ("a", "b"), "example.com/team": ("x",)},
    )
    assert user.impersonation() == [
        (b"Impersonate-User", b"user-a"),
        (b"Impersonate-Uid", b"uid-1"),
        (b"Impersonate-Group", b"kubeforge:users"),
        (b"Impersonate-Group", b"system:authenticated"),
        (b"Impersonate-Extra-scopes", b"a"),
        (b"Impersonate-Extra-scopes", b"b"),
        (b"Impersonate-Extra-example.com%2Fteam", b"x"),
    ]


def test_identities_that_are_not_ascii_are_passed_on_as_utf8() -> None:
    """A user or group named outside ASCII (an OIDC name such as Zoë) is impersonated as it is:
    the apiserver reads header values as bytes (Go strings)."""
    user = User("zoë@example.com", groups=("équipe-a",))
    assert user.impersonation() == [
        (b"Impersonate-User", "zoë@example.com".encode()),
        (b"Impersonate-Group", "équipe-a".encode()),
    ]
    import httpx

    request = httpx.Request("GET", "https://apiserver/api", headers=user.impersonation())
    raw = dict(request.headers.raw)
    assert raw[b"Impersonate-Group"] == "équipe-a".encode()  # sent as UTF-8 bytes


def test_field_error_paths() -> None:
    assert (
        field_error(
            {
                "loc": ("body", "spec", "resources", "accelerator", "count"),
                "msg": "Input should be greater than or equal to 0",
                "type": "greater_than_equal",
            }
        )["field"]
        == "spec.resources.accelerator.count"
    )
    assert field_error(
        {"loc": ("body", "spec", "volumes", 2, "size"), "msg": "x", "type": "missing"}
    ) == {"field": "spec.volumes[2].size", "message": "Required value", "type": "missing"}
    cel = field_error(
        {
            "loc": ("body", "spec", "reference"),
            "msg": "uri is required",
            "type": "cel_rule",
            "ctx": {"field_path": ".uri"},
        }
    )
    assert cel["field"] == "spec.reference.uri"
    assert (
        field_error(
            {"loc": ("path", "namespace"), "msg": "bad", "type": "string_pattern_mismatch"}
        )["field"]
        == "path.namespace"
    )


def _obj(
    kind: str,
    name: str,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec or {},
        "status": status or {},
    }


FTJ = _obj(
    "FineTuneJob",
    "tune-v2",
    status={
        "phase": "Succeeded",
        "model": {"name": "bot", "version": "v2", "uri": "s3://m/bot/v2"},
        "metrics": {"evalLoss": 4.2},
        "lineage": {
            "baseModel": "s3://m/base",
            "datasetUri": "s3://d/t.jsonl",
            "datasetDigest": "sha256:ab",
            "runId": "run-7",
        },
        "gpus": 0,
    },
    annotations={"kubeforge.io/trigger": "drift:team-a/watch: product psi 0.4 > 0.2"},
)
RUNNING = _obj("FineTuneJob", "tune-v3", status={"phase": "Running", "gpus": 4})
MS = _obj(
    "ModelServer",
    "bot",
    spec={"model": {"fineTuneJob": "tune-v2"}},
    status={
        "phase": "Progressing",
        "trafficSplit": "75/25",
        "stable": {"revision": "r1"},
        "canary": {"revision": "r2"},
        "gpus": 2,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
    },
)
DM = _obj(
    "DriftMonitor",
    "watch",
    spec={"target": {"modelServer": "bot"}},
    status={
        "phase": "Drifted",
        "conditions": [
            {
                "type": "DriftDetected",
                "status": "True",
                "reason": "DriftDetected",
                "message": "product psi 0.4 > 0.2",
            },
            {
                "type": "QualityDegraded",
                "status": "True",
                "reason": "QualityBelowThreshold",
                "message": "accuracy 0.61 < 0.8",
            },
        ],
        "quality": {"labels": 120, "scores": [{"metric": "accuracy", "value": 0.61}]},
    },
)


def test_catalog_joins_models_servers_and_drift() -> None:
    got = catalog([FTJ, RUNNING], [MS], [DM])
    assert [m["name"] for m in got["models"]] == ["tune-v2"]  # only registered outputs
    model = got["models"][0]
    assert model["servedBy"] == ["bot"]
    assert model["trigger"].startswith("drift:")
    server = got["modelServers"][0]
    assert server["trafficSplit"] == "75/25"
    assert server["metrics"] == {"evalLoss": 4.2}
    assert server["lineage"]["runId"] == "run-7"
    assert server["drift"][0]["drift"] == {
        "status": "True",
        "reason": "DriftDetected",
        "message": "product psi 0.4 > 0.2",
    }
    # live quality from ground truth sits beside drift; no anomaly check configured: no verdict
    assert server["drift"][0]["quality"]["message"] == "accuracy 0.61 < 0.8"
    assert server["drift"][0]["qualityScores"]["scores"][0]["value"] == 0.61
    assert server["drift"][0]["anomalies"] is None


def test_lineage_of_a_model_server() -> None:
    got = lineage(MS, {"tune-v2": FTJ})
    assert got["baseModel"] == "s3://m/base"
    assert got["dataset"] == {"uri": "s3://d/t.jsonl", "digest": "sha256:ab"}
    assert got["run"] == "run-7"
    assert got["source"] == {"fineTuneJob": "tune-v2"}
    uri_only = lineage(_obj("ModelServer", "x", spec={"model": {"uri": "s3://m/x"}}), {})
    assert uri_only["source"] == {"uri": "s3://m/x"}
    assert uri_only["fineTuneJob"] is None


def test_lineage_of_a_model_that_follows_its_newest_version() -> None:
    """spec.model.modelName: the FineTuneJob is the stable revision's; the canary's run traces to
    the drift that triggered it and the live data it learnt from."""
    retrain = _obj(
        "FineTuneJob",
        "watch-retrain-1",
        status={"phase": "Succeeded", "model": {"name": "bot", "version": "v2"}},
    )
    retrain["metadata"]["annotations"] = {
        "kubeforge.io/trigger": "drift:team-a/watch: product psi 0.4 > 0.2",
        "kubeforge.io/live-data": "600 training rows + 150 live rows, sha256 ab",
    }
    server = _obj(
        "ModelServer",
        "bot",
        spec={"model": {"modelName": "bot"}},
        status={
            "stable": {"revision": "r1", "uri": "s3://m/bot/v1", "fineTuneJob": "tune-v2"},
            "canary": {"revision": "r2", "uri": "s3://m/bot/v2", "fineTuneJob": "watch-retrain-1"},
        },
    )
    got = lineage(server, {"tune-v2": FTJ, "watch-retrain-1": retrain})
    assert got["source"] == {"modelName": "bot"}
    assert got["fineTuneJob"]["name"] == "tune-v2"
    assert got["dataset"]["digest"] == "sha256:ab"
    canary = got["versions"]["canary"]
    assert canary["revision"] == "r2"
    assert canary["fineTuneJob"]["trigger"].startswith("drift:team-a/watch")
    assert canary["fineTuneJob"]["liveData"].startswith("600 training rows + 150 live rows")
    listed = catalog([FTJ, retrain], [server], [])
    assert {m["name"]: m["servedBy"] for m in listed["models"]} == {
        "tune-v2": ["bot"],
        "watch-retrain-1": ["bot"],
    }


def test_gpu_use_by_kind() -> None:
    got = gpu_use(
        {
            "Workbench": [_obj("Workbench", "nb", status={"gpus": 1})],
            "FineTuneJob": [FTJ, RUNNING],
            "ModelServer": [MS],
        }
    )
    assert got["total"] == 7
    assert got["byKind"] == {"Workbench": 1, "FineTuneJob": 4, "ModelServer": 2}
    assert {"kind": "FineTuneJob", "name": "tune-v3", "gpus": 4} in got["objects"]
