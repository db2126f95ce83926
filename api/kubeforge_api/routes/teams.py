"""The platform admin's view of every Team: its namespace, members, queue and Kueue's accounting
of its quota (the Team's status, which the operator refreshes every few seconds from the
ClusterQueue).

Teams are cluster-scoped: they are listed as the caller, so only who may list
``teams.kubeforge.io`` (a platform admin) sees them; a team member gets 403 and the reason, and
sees their own team's quota in ``GET /api/v1/namespaces/{ns}/queues`` instead."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kubeforge_api.catalog import team_view
from kubeforge_api.cluster import ApiserverError
from kubeforge_api.deps import AsCaller
from kubeforge_api.errors import ERRORS, ProblemError
from kubeforge_api.models import Teams
from kubeforge_crds import TEAM

router = APIRouter(prefix="/api/v1", tags=["teams"], responses=ERRORS)


@router.get("/teams", response_model=Teams, response_model_by_alias=True)
async def teams(api: AsCaller) -> dict[str, Any]:
    """Every Team (for who may list ``teams.kubeforge.io``): phase, namespace, members, queue,
    and per flavor and resource the nominal quota, what is used and borrowed, with the admitted
    and pending workloads (Kueue's ClusterQueue status, as the Team's status carries it;
    ``quota`` is null while Kueue has not made the queue active, and ``quotaReady`` says why)."""
    try:
        listed = await api.call("GET", f"/apis/{TEAM.api_version}/{TEAM.plural}")
    except ApiserverError as err:
        if err.status == 403:
            raise ProblemError(
                403,
                f"{err}: the Teams view is the platform admin's (it needs list on "
                f"{TEAM.plural}.{TEAM.group}); a team's own quota is at "
                "/api/v1/namespaces/{namespace}/queues",
            ) from err
        raise
    items = sorted(listed.get("items") or [], key=lambda t: t["metadata"]["name"])
    return {"teams": [team_view(t) for t in items]}
