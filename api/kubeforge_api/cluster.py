"""The API's access to the apiserver: TokenReview to learn who the caller is, then every request
as the caller through impersonation, so that Kubernetes RBAC decides.

Written on httpx rather than the kubernetes client because impersonation needs one
``Impersonate-Group`` header per group, and that client's default headers are a dict (one value
per name). The connection details (server, CA, client credentials) come from the kubernetes
client's own kubeconfig and in-cluster loaders."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config


@dataclass(frozen=True)
class User:
    """An authenticated caller, as a TokenReview describes them."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def impersonation(self) -> list[tuple[bytes, bytes]]:
        """The impersonation headers; values are UTF-8 (the apiserver reads them as Go strings,
        so a user or group name that is not ASCII is passed on as it is)."""
        headers = [("Impersonate-User", self.name)]
        if self.uid:
            headers.append(("Impersonate-Uid", self.uid))
        headers += [("Impersonate-Group", g) for g in self.groups]
        for key, values in self.extra.items():
            # extra keys may hold '/' and other characters not allowed in a header name
            name = f"Impersonate-Extra-{quote(key, safe='')}"
            headers += [(name, v) for v in values]
        return [(name.encode(), value.encode()) for name, value in headers]


MAX_CACHED_TOKENS = 10_000


class UnauthenticatedError(Exception):
    """The caller's token is missing or not valid (HTTP 401)."""


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; UnauthenticatedError without."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError(
            "no bearer token: send 'Authorization: Bearer <token>' with a token the cluster "
            "accepts (kubectl's own, or a service account token)"
        )
    return token.strip()


class ApiserverError(Exception):
    """The apiserver refused a request; ``status`` and ``body`` are its answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message") or f"apiserver answered {status}")
        self.status = status
        self.body = body


def _connection(kubeconfig: Path | None) -> k8s.Configuration:
    cfg = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
            return cfg
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(
        config_file=str(kubeconfig) if kubeconfig else None, client_configuration=cfg
    )
    return cfg


class _OwnToken(httpx.Auth):
    """The API's own bearer token as the kubernetes client's configuration holds it. In a pod
    that is the service account token the kubelet rotates: the client's in-cluster loader
    re-reads it (its refresh hook, run here before each request), and writes it with a
    lower-case ``bearer`` scheme, which the apiserver does not accept from us as is."""

    def __init__(self, cfg: k8s.Configuration) -> None:
        self.cfg = cfg
        self.lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self.lock:
            if self.cfg.refresh_api_key_hook is not None:
                self.cfg.refresh_api_key_hook(self.cfg)
            keys = self.cfg.api_key or {}
            key = str(keys.get("authorization") or keys.get("BearerToken") or "")
        if key:
            scheme, _, token = key.partition(" ")
            bearer = token if scheme.lower() == "bearer" and token else key
            request.headers["Authorization"] = f"Bearer {bearer}"
        yield request


WATCH_SECONDS = 120  # one watch's length at most; the portal then opens the next
MAX_WATCHES = 200  # watches open at once (each is a connection to the apiserver)


class Cluster:
    """One HTTP connection pool to the apiserver under the API's own identity (and one for
    watches)."""

    def __init__(
        self,
        kubeconfig: Path | None = None,
        timeout: float = 30,
        token_cache_seconds: float = 30,
        forwarded_extras: tuple[str, ...] = ("scopes",),
        failed_token_cache_seconds: float = 10,
    ) -> None:
        cfg = _connection(kubeconfig)
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else None
        if context is not None and cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        self.http = httpx.Client(
            base_url=cfg.host,
            verify=context if context is not None else cfg.verify_ssl,
            auth=_OwnToken(cfg),
            timeout=timeout,
        )
        # watches have their own pool, async: a hundred open watches hold neither the pool
        # nor the worker threads that every other request to the apiserver needs
        self.watch_http = httpx.AsyncClient(
            base_url=cfg.host,
            verify=context if context is not None else cfg.verify_ssl,
            auth=_OwnToken(cfg),
            timeout=httpx.Timeout(timeout, read=WATCH_SECONDS + timeout, pool=1),
            limits=httpx.Limits(max_connections=MAX_WATCHES, max_keepalive_connections=0),
        )
        self.forwarded_extras = frozenset(forwarded_extras)
        self._cache: dict[str, tuple[float, User | UnauthenticatedError]] = {}
        self._ttl = token_cache_seconds
        self._failed_ttl = failed_token_cache_seconds
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    async def aclose(self) -> None:
        await self.watch_http.aclose()
        self.close()

    async def watch(
        self, user: User, path: str, resource_version: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The apiserver's watch of ``path`` as ``user`` from ``resource_version``: its events
        (``{type, object}``; bookmarks included) until the apiserver ends it after
        ``WATCH_SECONDS`` or the reader stops. A refusal raises ApiserverError; more than
        ``MAX_WATCHES`` open at once, httpx's PoolTimeout."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        headers = user.impersonation()
        async with self.watch_http.stream("GET", path, params=params, headers=headers) as answer:
            if answer.status_code >= 400:
                await answer.aread()
                raise ApiserverError(answer.status_code, _body(answer))
            async for line in answer.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    def authenticate(self, token: str) -> User:
        """Who ``token`` belongs to, by a TokenReview (cached for a short while, by digest)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                if isinstance(hit[1], UnauthenticatedError):
                    raise hit[1]  # a rejected token is not reviewed again for a while
                return hit[1]
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        response = self.http.post("/apis/authentication.k8s.io/v1/tokenreviews", json=review)
        if response.status_code >= 400:
            raise ApiserverError(response.status_code, _body(response))
        status = response.json().get("status") or {}
        if not status.get("authenticated"):
            reason = status.get("error") or "the apiserver does not know this token"
            rejected = UnauthenticatedError(
                f"the bearer token was rejected by the cluster: {reason}"
            )
            self._remember(key, now + self._failed_ttl, rejected)
            raise rejected
        info = status.get("user") or {}
        user = User(
            name=info.get("username", ""),
            uid=info.get("uid", ""),
            groups=tuple(info.get("groups") or ()),
            # only the extras that change what RBAC or admission decide are passed on (each
            # needs its own `impersonate userextras/<key>` permission); a service account
            # token's credential-id and node bindings are not
            extra={
                k: tuple(v)
                for k, v in (info.get("extra") or {}).items()
                if k in self.forwarded_extras
            },
        )
        self._remember(key, now + self._ttl, user)
        return user

    def _remember(self, key: str, until: float, answer: User | UnauthenticatedError) -> None:
        """Keep a review's answer until ``until``; the cache is bounded (the oldest go first), so
        a stream of random tokens cannot grow it."""
        with self._lock:
            if len(self._cache) >= MAX_CACHED_TOKENS:
                now = time.monotonic()
                for k in [k for k, v in self._cache.items() if v[0] <= now] or list(self._cache)[
                    :1000
                ]:
                    self._cache.pop(k, None)
            self._cache[key] = (until, answer)

    def own_namespaces(self) -> list[str]:
        """Every namespace's name, read with the API's own identity (names only; the caller
        sees those their own access review allows, see the namespaces route)."""
        response = self.http.get("/api/v1/namespaces")
        if response.status_code >= 400:
            raise ApiserverError(response.status_code, _body(response))
        return [str(n["metadata"]["name"]) for n in response.json().get("items") or []]

    def own_get(self, path: str) -> dict[str, Any] | None:
        """A GET with the API's own identity; None on 404."""
        response = self.http.get(path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ApiserverError(response.status_code, _body(response))
        return _body(response)

    def passthrough(self, user: User, path: str, params: dict[str, str] | None = None) -> bytes:
        """A GET as ``user`` whose JSON answer is passed on as it came (no parse and re-encode
        of a thousand-object list); error answers raise ApiserverError as in ``request``."""
        response = self.http.get(path, params=params, headers=user.impersonation())
        if response.status_code >= 400:
            raise ApiserverError(response.status_code, _body(response))
        return response.content

    def request(
        self,
        user: User,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """A request to the apiserver as ``user``; its error answers raise ApiserverError."""
        headers = user.impersonation()
        content = None
        if body is not None:
            headers.append((b"Content-Type", content_type.encode()))
            content = json.dumps(body)
        response = self.http.request(method, path, content=content, params=params, headers=headers)
        answer = _body(response)
        if response.status_code >= 400:
            raise ApiserverError(response.status_code, answer)
        return answer


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"message": response.text[:500]}
    return data if isinstance(data, dict) else {"items": data}
