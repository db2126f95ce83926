"""Quota a team can see: its Kueue LocalQueues, the ClusterQueue behind each (nominal quota,
borrowing limit, what is used and borrowed, per flavor and resource), the workloads waiting with
their positions, and whether a request would fit now. Pure functions of Kueue's own objects: the
numbers are Kueue's, never recomputed from pods."""

from __future__ import annotations

from typing import Any

from kubernetes.utils.quantity import parse_quantity


def _number(quantity: Any) -> float:
    return float(parse_quantity(str(quantity))) if quantity is not None else 0.0


def _usage(status: dict[str, Any], key: str) -> dict[tuple[str, str], dict[str, float]]:
    """(flavor, resource) -> {total, borrowed} from a queue's status.flavorsUsage."""
    out = {}
    for flavor in status.get(key) or []:
        for res in flavor.get("resources") or []:
            out[(flavor["name"], res["name"])] = {
                "total": _number(res.get("total")),
                "borrowed": _number(res.get("borrowed")),
            }
    return out


def quota_rows(
    cluster_queue: dict[str, Any], local_queue: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One row per flavor and resource of the ClusterQueue: nominal, borrowing limit (None:
    no limit in a cohort; 0 without one), used and borrowed in the ClusterQueue, and used by
    ``local_queue``'s workloads."""
    spec = cluster_queue.get("spec") or {}
    in_cohort = bool(spec.get("cohortName"))
    used = _usage(cluster_queue.get("status") or {}, "flavorsUsage")
    mine = _usage((local_queue or {}).get("status") or {}, "flavorsUsage")
    rows = []
    for group in spec.get("resourceGroups") or []:
        for flavor in group.get("flavors") or []:
            for res in flavor.get("resources") or []:
                key = (flavor["name"], res["name"])
                limit = res.get("borrowingLimit")
                rows.append(
                    {
                        "flavor": flavor["name"],
                        "resource": res["name"],
                        "nominal": _number(res.get("nominalQuota")),
                        "borrowingLimit": _number(limit) if limit is not None or not in_cohort
                        else None,
                        "used": used.get(key, {}).get("total", 0.0),
                        "borrowed": used.get(key, {}).get("borrowed", 0.0),
                        "usedByThisQueue": mine.get(key, {}).get("total", 0.0),
                    }
                )  # fmt: skip
    return rows


def pending_rows(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The visibility API's pending workloads, positions from 1, with what each belongs to."""
    rows = []
    for item in pending:
        owners = item.get("metadata", {}).get("ownerReferences") or []
        owner = next((o for o in owners if o.get("kind") != "Pod"), owners[0] if owners else {})
        rows.append(
            {
                "workload": item["metadata"]["name"],
                "owner": f"{owner['kind']}/{owner['name']}" if owner else None,
                "priority": int(item.get("priority", 0)),
                "position": int(item.get("positionInLocalQueue", 0)) + 1,
                "positionInClusterQueue": int(item.get("positionInClusterQueue", 0)) + 1,
            }
        )
    return sorted(rows, key=lambda r: r["position"])


def queue_view(
    local_queue: dict[str, Any],
    cluster_queue: dict[str, Any] | None,
    pending: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A LocalQueue as the team sees it. ``pending`` is None when Kueue's visibility API did not
    answer (the counts still come from the LocalQueue's status)."""
    status = local_queue.get("status") or {}
    cq_name = (local_queue.get("spec") or {}).get("clusterQueue")
    view: dict[str, Any] = {
        "name": local_queue["metadata"]["name"],
        "clusterQueue": cq_name,
        "cohort": ((cluster_queue or {}).get("spec") or {}).get("cohortName"),
        "admittedWorkloads": int(status.get("admittedWorkloads", 0)),
        "pendingWorkloads": int(status.get("pendingWorkloads", 0)),
        "quota": quota_rows(cluster_queue, local_queue) if cluster_queue else [],
        "pending": pending_rows(pending) if pending is not None else None,
    }
    if cluster_queue is None:
        view["problem"] = f"ClusterQueue {cq_name} does not exist: ask the platform team"
    return view


def fit(request: dict[str, float], cluster_queue: dict[str, Any]) -> dict[str, Any]:
    """Whether ``request`` (resource -> amount) fits now in one flavor of the ClusterQueue
    within its nominal quota, and if not, what is short in the flavor closest to fitting. What
    the cohort could lend is not counted: Kueue may still admit by borrowing."""
    rows = quota_rows(cluster_queue)
    flavors: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        flavors.setdefault(row["flavor"], {})[row["resource"]] = row
    best: tuple[float, str, list[dict[str, Any]]] | None = None
    for flavor, resources in flavors.items():
        short: list[dict[str, Any]] = []
        missing = 0.0
        for resource, amount in sorted(request.items()):
            found = resources.get(resource)
            free = max(0.0, found["nominal"] - found["used"]) if found else 0.0
            if amount > free:
                short.append({"resource": resource, "requested": amount, "free": free})
                missing += amount - free
        if best is None or missing < best[0]:
            best = (missing, flavor, short)
    if best is None:
        return {"fits": False, "flavor": None, "short": [], "problem": "it has no quota at all"}
    _, flavor, short = best
    return {"fits": not short, "flavor": flavor, "short": short}
