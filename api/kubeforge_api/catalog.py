"""The model catalog, lineage, GPU use and the Teams: pure views over the objects a caller may
list (the routes list them as the caller; nothing here talks to the cluster)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GPU_KINDS = ("Workbench", "FineTuneJob", "ModelServer")


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return {k: c.get(k) for k in ("status", "reason", "message")}
    return None


def team_view(team: dict[str, Any]) -> dict[str, Any]:
    """One Team as the platform admin's view shows it: what its status says, and its QuotaReady
    condition (why there is no quota to show, when there is none)."""
    status = team.get("status") or {}
    return {
        "name": team["metadata"]["name"],
        "phase": status.get("phase"),
        "namespace": status.get("namespace"),
        "members": status.get("members"),
        "clusterQueue": status.get("clusterQueue"),
        "queueName": status.get("queueName"),
        "quota": status.get("quota"),
        "quotaReady": _condition(team, "QuotaReady"),
    }


def _ftj_view(ftj: dict[str, Any]) -> dict[str, Any]:
    status = ftj.get("status") or {}
    return {
        "name": ftj["metadata"]["name"],
        "phase": status.get("phase"),
        "model": status.get("model"),
        "metrics": status.get("metrics"),
        "lineage": status.get("lineage"),
        "datasetDigest": status.get("datasetDigest"),
        "trigger": (ftj["metadata"].get("annotations") or {}).get("kubeforge.io/trigger"),
        "liveData": (ftj["metadata"].get("annotations") or {}).get("kubeforge.io/live-data"),
    }


def model_sources(server: dict[str, Any]) -> tuple[dict[str, Any], str | None, dict[str, str]]:
    """What a ModelServer's spec asks for (uri, fineTuneJob or modelName), the FineTuneJob of
    the version that answers for it (the named one, or for modelName the one serving now), and
    the FineTuneJob of each revision in status (stable, canary, rolledBack)."""
    asked = (server.get("spec") or {}).get("model") or {}
    status = server.get("status") or {}
    versions = {
        role: str((status.get(role) or {}).get("fineTuneJob"))
        for role in ("stable", "canary", "rolledBack")
        if (status.get(role) or {}).get("fineTuneJob")
    }
    if asked.get("fineTuneJob"):
        return {"fineTuneJob": asked["fineTuneJob"]}, str(asked["fineTuneJob"]), versions
    if asked.get("modelName"):
        return {"modelName": asked["modelName"]}, versions.get("stable"), versions
    return {"uri": asked.get("uri")}, None, versions


def drift_view(dm: dict[str, Any]) -> dict[str, Any]:
    status = dm.get("status") or {}
    return {
        "name": dm["metadata"]["name"],
        "phase": status.get("phase"),
        "drift": _condition(dm, "DriftDetected"),
        "bias": _condition(dm, "BiasDetected"),
        "quality": _condition(dm, "QualityDegraded"),
        "qualityScores": status.get("quality"),
        "anomalies": _condition(dm, "AnomaliesDetected"),
        "lastEvaluation": status.get("lastEvaluation"),
        "scores": status.get("scores") or [],
        "actions": status.get("actions") or [],
    }


def catalog(
    ftjs: list[dict[str, Any]], servers: list[dict[str, Any]], monitors: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every model kubeforge knows in a namespace: the registered outputs of FineTuneJobs, and
    what each ModelServer serves, with evaluation metrics, lineage, serving state, traffic split
    and drift status."""
    by_ftj = {f["metadata"]["name"]: f for f in ftjs}
    drift_by_target: dict[str, list[dict[str, Any]]] = {}
    for dm in monitors:
        target = ((dm.get("spec") or {}).get("target") or {}).get("modelServer")
        if target:
            drift_by_target.setdefault(target, []).append(drift_view(dm))
    served_by: dict[str, list[str]] = {}
    serving = []
    for ms in servers:
        status = ms.get("status") or {}
        asked, source, versions = model_sources(ms)
        for name in sorted({n for n in (source, versions.get("canary")) if n}):
            served_by.setdefault(name, []).append(ms["metadata"]["name"])
        ftj = by_ftj.get(source) if source else None
        serving.append(
            {
                "name": ms["metadata"]["name"],
                "phase": status.get("phase"),
                "ready": _condition(ms, "Ready"),
                "url": status.get("url"),
                "stable": status.get("stable"),
                "canary": status.get("canary"),
                "trafficSplit": status.get("trafficSplit"),
                "rolledBack": status.get("rolledBack"),
                "source": asked,
                "metrics": (ftj or {}).get("status", {}).get("metrics"),
                "lineage": (ftj or {}).get("status", {}).get("lineage"),
                "drift": drift_by_target.get(ms["metadata"]["name"], []),
            }
        )
    models = [
        {**_ftj_view(f), "servedBy": served_by.get(f["metadata"]["name"], [])}
        for f in ftjs
        if (f.get("status") or {}).get("model")
    ]
    return {"models": models, "modelServers": serving}


def lineage(server: dict[str, Any], ftjs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Where a ModelServer's model came from: its FineTuneJob, dataset digest, base model, run,
    and for each revision in status (stable, canary, rolled back) the FineTuneJob that made it,
    with what triggered that run (e.g. a DriftMonitor's drift) and its live data. ``ftjs`` are
    the FineTuneJobs by name (those that exist)."""
    status = server.get("status") or {}
    asked, source, versions = model_sources(server)
    out: dict[str, Any] = {
        "modelServer": {
            "name": server["metadata"]["name"],
            "stable": status.get("stable"),
            "canary": status.get("canary"),
            "decisions": status.get("decisions") or [],
        },
        "source": asked,
        "fineTuneJob": None,
        "versions": {
            role: {
                "revision": (status.get(role) or {}).get("revision"),
                "uri": (status.get(role) or {}).get("uri"),
                "fineTuneJob": _ftj_view(ftjs[name]) if name in ftjs else {"name": name},
            }
            for role, name in versions.items()
        },
    }
    ftj = ftjs.get(source) if source else None
    if ftj is not None:
        view = _ftj_view(ftj)
        lin = view.get("lineage") or {}
        out["fineTuneJob"] = view
        out["baseModel"] = lin.get("baseModel")
        out["dataset"] = {
            "uri": lin.get("datasetUri"),
            "digest": lin.get("datasetDigest") or view.get("datasetDigest"),
        }
        out["run"] = lin.get("runId")
    return out


def gpu_use(objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """GPUs held now per kind (from each object's ``status.gpus``)."""
    by_kind: dict[str, int] = {}
    held = []
    for kind, items in objects.items():
        total = 0
        for obj in items:
            gpus = int((obj.get("status") or {}).get("gpus") or 0)
            if gpus:
                held.append({"kind": kind, "name": obj["metadata"]["name"], "gpus": gpus})
            total += gpus
        by_kind[kind] = total
    return {"total": sum(by_kind.values()), "byKind": by_kind, "objects": held}
