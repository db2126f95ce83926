"""The routes' dependencies, as ``Annotated`` types: the settings, the cluster connection, the
caller (TokenReview of the bearer token) and the apiserver *as the caller* (impersonation). A
test replaces any of them with ``app.dependency_overrides``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from kubeforge_api.cluster import Cluster, User, bearer_token
from kubeforge_api.settings import ApiSettings
from kubeforge_crds import KindInfo

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
Namespace = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="Namespace.")]
Name = Annotated[str, Path(pattern=DNS_SUBDOMAIN, max_length=253, description="Object name.")]


# The dependencies are coroutines, even those that only read app state: FastAPI runs a plain
# function dependency in its thread pool, a hand-off per request for nothing.
async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_cluster(request: Request) -> Cluster:
    cluster: Cluster = request.app.state.cluster
    return cluster


Settings = Annotated[ApiSettings, Depends(get_settings)]
ClusterDep = Annotated[Cluster, Depends(get_cluster)]


async def caller(request: Request, cluster: ClusterDep) -> User:
    """Who sent the request: the bearer token, reviewed by the cluster (TokenReview) in the
    front door (``guard``) before the body was read, or here."""
    reviewed: User | None = getattr(request.state, "user", None)
    if reviewed is not None:
        return reviewed
    token = bearer_token(request.headers.get("authorization", ""))
    return await run_in_threadpool(cluster.authenticate, token)


Caller = Annotated[User, Depends(caller)]


def object_path(kind: KindInfo, namespace: str, name: str | None = None) -> str:
    base = f"/apis/{kind.group}/{kind.version}/namespaces/{namespace}/{kind.plural}"
    return f"{base}/{name}" if name else base


class Apiserver:
    """The apiserver as the caller: every request impersonates them, so RBAC decides."""

    def __init__(self, cluster: Cluster, user: User) -> None:
        self.cluster = cluster
        self.user = user

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        return await run_in_threadpool(self.cluster.request, self.user, method, path, **kw)

    async def passthrough(self, path: str, params: dict[str, str] | None = None) -> bytes:
        """The apiserver's answer unparsed (a list of a thousand objects is not re-encoded, a
        pod's log is text)."""
        return await run_in_threadpool(self.cluster.passthrough, self.user, path, params)

    def watch(self, path: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        return self.cluster.watch(self.user, path, resource_version)

    async def may(
        self, verb: str, namespace: str, kind: KindInfo, subresource: str = "", name: str = ""
    ) -> bool:
        """Whether RBAC lets the caller do ``verb`` (a SelfSubjectAccessReview made as them);
        a subresource no apiserver serves is reviewed like any other."""
        attributes = {"namespace": namespace, "verb": verb, "group": kind.group}
        attributes |= {"resource": kind.plural, "subresource": subresource, "name": name}
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v}},
        }
        answer = await self.call(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review
        )
        return bool((answer.get("status") or {}).get("allowed"))

    async def items(self, kind: KindInfo, namespace: str) -> list[Any]:
        return list((await self.call("GET", object_path(kind, namespace))).get("items") or [])

    async def cluster_object(self, path: str) -> dict[str, Any] | None:
        """A cluster-scoped object read with the API's own identity (a Kueue ClusterQueue a
        LocalQueue of the caller names); None when it does not exist."""
        return await run_in_threadpool(self.cluster.own_get, path)

    async def own_namespaces(self) -> list[str]:
        """The namespaces the API's own identity can see (to review the caller's access)."""
        return await run_in_threadpool(self.cluster.own_namespaces)


async def as_caller(cluster: ClusterDep, user: Caller) -> Apiserver:
    return Apiserver(cluster, user)


AsCaller = Annotated[Apiserver, Depends(as_caller)]
