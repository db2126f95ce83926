"""Who the caller is, and the namespaces they may use."""

from __future__ import annotations

import time

from fastapi import APIRouter

from kubeforge_api.cluster import ApiserverError
from kubeforge_api.deps import AsCaller, Caller
from kubeforge_api.errors import ERRORS
from kubeforge_api.models import Namespaces, WhoAmI
from kubeforge_crds import WORKBENCH

MAX_NAMESPACES_REVIEWED = 500
NAMESPACES_CACHE_SECONDS = 30.0
_NAMESPACES: dict[tuple[str, tuple[str, ...]], tuple[float, Namespaces]] = {}

router = APIRouter(prefix="/api/v1", tags=["identity"], responses=ERRORS)


@router.get("/whoami", response_model=WhoAmI)
async def whoami(user: Caller) -> WhoAmI:
    """Who the bearer token belongs to, as the cluster says."""
    return WhoAmI(username=user.name, groups=list(user.groups))


@router.get("/namespaces", response_model=Namespaces)
async def namespaces(api: AsCaller) -> Namespaces:
    """The namespaces where the caller may list Workbenches: all they may list, if they may
    list namespaces; otherwise each namespace is checked with a SelfSubjectAccessReview made as
    the caller. Answers are kept per caller for ``NAMESPACES_CACHE_SECONDS``."""
    key = (api.user.name, api.user.groups)
    now = time.monotonic()
    cached = _NAMESPACES.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    answer = await _namespaces(api)
    if len(_NAMESPACES) > 10_000:
        _NAMESPACES.clear()
    _NAMESPACES[key] = (now + NAMESPACES_CACHE_SECONDS, answer)
    return answer


async def _namespaces(api: AsCaller) -> Namespaces:
    try:
        listed = await api.call("GET", "/api/v1/namespaces")
        return Namespaces(items=[n["metadata"]["name"] for n in listed.get("items") or []])
    except ApiserverError as err:
        if err.status != 403:
            raise
    allowed = []
    for name in (await api.own_namespaces())[:MAX_NAMESPACES_REVIEWED]:
        if await api.may("list", name, WORKBENCH):
            allowed.append(name)
    return Namespaces(items=allowed)
