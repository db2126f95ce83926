"""CRUD and Events of the four kinds, per namespace, as the caller. The request bodies and the
documented answers are each kind's own models (``models.create_body``, ``models.object_model``);
the apiserver's answers are passed on as they are (a list of a thousand objects is not
re-encoded)."""

# No `from __future__ import annotations`: the per-kind body models are made at run time, and
# FastAPI resolves the route functions' annotations when the routes are added.

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import yaml
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kubeforge_api.cluster import WATCH_SECONDS, ApiserverError
from kubeforge_api.deps import AsCaller, Name, Namespace, object_path
from kubeforge_api.errors import ERRORS, NOT_FOUND, Problem, ProblemError
from kubeforge_api.models import (
    ContainerLog,
    Events,
    KindSchema,
    Logs,
    create_body,
    list_model,
    object_model,
    update_body,
)
from kubeforge_crds import KINDS, KindInfo
from kubeforge_crds.contracts.labels import LABEL_INSTANCE, LABEL_NAME
from kubeforge_crds.generate import model_schema

DELETE_OPTIONS = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}


def new_object(kind: KindInfo, namespace: str, body: Any) -> dict[str, Any]:
    """The object a create body describes, in the namespace of the URL."""
    meta = body.metadata
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {
            "name": meta.name,
            "namespace": namespace,
            **({"labels": meta.labels} if meta.labels else {}),
            **({"annotations": meta.annotations} if meta.annotations else {}),
        },
        "spec": body.spec.to_wire(),
    }


def replaced(current: dict[str, Any], name: str, body: Any) -> dict[str, Any]:
    """``current`` with the update body's spec, labels and annotations (and resourceVersion,
    so that a change made since answers 409; or with ``generation``, a change of the spec made
    since: the operator's status writes in between are no conflict); a body naming another
    object is refused."""
    meta = body.metadata
    if meta.name is not None and meta.name != name:
        raise ProblemError(
            422,
            [
                {
                    "field": "metadata.name",
                    "message": f"{meta.name!r} is not the name in the URL ({name!r}); "
                    "an object cannot be renamed",
                    "type": "value_error",
                }
            ],
        )
    live_generation = current["metadata"].get("generation")
    if meta.generation is not None and meta.generation != live_generation:
        raise ProblemError(
            409,
            f"the spec of {name!r} changed since it was read (generation {meta.generation}, now "
            f"{live_generation}): read it again and make the change on that",
        )
    current["metadata"]["resourceVersion"] = (
        meta.resource_version or current["metadata"]["resourceVersion"]
    )
    if meta.labels is not None:
        current["metadata"]["labels"] = meta.labels
    if meta.annotations is not None:
        current["metadata"]["annotations"] = meta.annotations
    current["spec"] = body.spec.to_wire()
    current.pop("status", None)
    return current


def kind_router(kind: KindInfo) -> APIRouter:
    """The six routes of one kind under ``/api/v1/namespaces/{namespace}/<plural>``.

    Long on purpose: six short route functions that close over the kind and its models."""
    router = APIRouter(prefix=f"/api/v1/namespaces/{{namespace}}/{kind.plural}", tags=[kind.kind])
    create_model, update_model = create_body(kind), update_body(kind)
    one, many = object_model(kind), list_model(kind)

    @router.get(
        "",
        response_model=many,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
        operation_id=f"list{kind.kind}",
        summary=f"List {kind.kind}s",
    )
    async def list_objects(namespace: Namespace, api: AsCaller, watch: Watch = False) -> Response:
        path = object_path(kind, namespace)
        if not watch:
            return Response(await api.passthrough(path), media_type="application/json")
        listed = await api.call("GET", path)  # a refusal is its answer, before the stream
        return StreamingResponse(
            watch_events(api, path, listed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.post(
        "",
        response_model=one,
        status_code=201,
        responses={**ERRORS, 409: {"model": Problem, "description": "Exists."}},
        operation_id=f"create{kind.kind}",
        summary=f"Create a {kind.kind}",
    )
    async def create_object(namespace: Namespace, body: create_model, api: AsCaller) -> Response:  # type: ignore[valid-type]
        obj = new_object(kind, namespace, body)
        created = await api.call("POST", object_path(kind, namespace), body=obj)
        return JSONResponse(created, status_code=201)

    @router.get(
        "/{name}",
        response_model=one,
        responses=NOT_FOUND,
        operation_id=f"read{kind.kind}",
        summary=f"Read a {kind.kind}",
    )
    async def get_object(namespace: Namespace, name: Name, api: AsCaller) -> Response:
        return JSONResponse(await api.call("GET", object_path(kind, namespace, name)))

    @router.put(
        "/{name}",
        response_model=one,
        responses={**NOT_FOUND, 409: {"model": Problem, "description": "Changed since."}},
        operation_id=f"replace{kind.kind}",
        summary=f"Replace a {kind.kind}'s spec",
    )
    async def replace_object(
        namespace: Namespace,
        name: Name,
        body: update_model,  # type: ignore[valid-type]
        api: AsCaller,
    ) -> Response:
        path = object_path(kind, namespace, name)
        meta = body.metadata  # type: ignore[attr-defined]
        # a change based on the spec's generation: the operator's status write between this
        # GET and PUT is no conflict, so it is made again on the newer object (replaced()
        # still refuses it when the spec changed since)
        retries = 2 if meta.generation is not None and meta.resource_version is None else 0
        while True:
            obj = replaced(await api.call("GET", path), name, body)
            try:
                return JSONResponse(await api.call("PUT", path, body=obj))
            except ApiserverError as err:
                if err.status != 409 or retries == 0:
                    raise
                retries -= 1

    @router.delete(
        "/{name}",
        response_model=one,
        responses=NOT_FOUND,
        operation_id=f"delete{kind.kind}",
        summary=f"Delete a {kind.kind}",
    )
    async def delete_object(namespace: Namespace, name: Name, api: AsCaller) -> Response:
        path = object_path(kind, namespace, name)
        return JSONResponse(await api.call("DELETE", path, body=DELETE_OPTIONS))

    @router.get(
        "/{name}/events",
        response_model=Events,
        responses=NOT_FOUND,
        operation_id=f"events{kind.kind}",
        summary=f"Events about a {kind.kind}",
    )
    async def object_events(namespace: Namespace, name: Name, api: AsCaller) -> Events:
        await api.call("GET", object_path(kind, namespace, name))  # 404 / 403 first
        selector = f"involvedObject.kind={kind.kind},involvedObject.name={name}"
        events = await api.call(
            "GET", f"/api/v1/namespaces/{namespace}/events", params={"fieldSelector": selector}
        )
        return Events(items=events.get("items", []))

    add_views(router, kind)
    return router


Watch = Annotated[
    bool,
    Query(
        description="Answer with server-sent events instead: `snapshot` (the list), then each "
        "change as the apiserver's watch reports it (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, "
        f"`ERROR`), for up to {WATCH_SECONDS} s; then reconnect. An `error` event ends a stream "
        "that failed after it began."
    ),
]


def sse(event: str, data: Any) -> bytes:
    """One server-sent event (compact JSON has no newline to escape)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def watch_events(api: AsCaller, path: str, listed: dict[str, Any]) -> AsyncIterator[bytes]:
    """The list, then the apiserver's watch from its resourceVersion, as server-sent events. A
    failure after the stream began (its 200 is sent) can only be said in the stream."""
    yield sse("snapshot", listed)
    version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
    try:
        async for event in api.watch(path, version):
            yield sse(str(event.get("type")), event.get("object"))
    except ApiserverError as err:
        yield sse("error", {"status": err.status, "message": str(err)})
    except httpx.HTTPError as err:  # the apiserver went away, or every watch slot is taken
        yield sse("error", {"status": 503, "message": f"the watch failed: {type(err).__name__}"})


# annotations kubectl and the apiserver keep that would not belong in a file kept in Git
_NOT_IN_GIT = ("kubectl.kubernetes.io/last-applied-configuration",)
MAX_POD_LOGS = 5
LogLines = Annotated[int, Query(ge=1, le=5000, description="Lines from each log's end.")]


def manifest(obj: dict[str, Any]) -> dict[str, Any]:
    """What ``kubectl apply -f`` needs to make the object again: its kind, name, namespace,
    labels, annotations and spec; no status, uid, resourceVersion or managed fields."""
    meta = obj.get("metadata") or {}
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_IN_GIT}
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            **({"labels": meta["labels"]} if meta.get("labels") else {}),
            **({"annotations": notes} if notes else {}),
        },
        "spec": obj.get("spec") or {},
    }


async def container_logs(
    api: AsCaller, namespace: str, pod: dict[str, Any], lines: int
) -> list[ContainerLog]:
    """Each container's last ``lines``, read as the caller (the pods/log subresource, so
    RBAC applies); a container without a log says why instead."""
    name = pod["metadata"]["name"]
    phase = (pod.get("status") or {}).get("phase")
    found = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        params = {"container": container["name"], "tailLines": str(lines)}
        try:
            raw = await api.passthrough(f"/api/v1/namespaces/{namespace}/pods/{name}/log", params)
            text, problem = raw.decode(errors="replace"), None
        except ApiserverError as err:
            if err.status in (401, 403):
                raise
            text, problem = "", str(err)
        found.append(ContainerLog(pod=name, container=container["name"], phase=phase,
                                  text=text, problem=problem))  # fmt: skip
    return found


def add_views(router: APIRouter, kind: KindInfo) -> None:
    """The object as a manifest for Git, and the logs of the pods it owns."""

    @router.get(
        "/{name}/manifest",
        response_class=Response,
        responses={**NOT_FOUND, 200: {"content": {"application/yaml": {}}}},
        operation_id=f"manifest{kind.kind}",
        summary=f"A {kind.kind} as YAML that kubectl apply accepts",
    )
    async def object_manifest(namespace: Namespace, name: Name, api: AsCaller) -> Response:
        obj = await api.call("GET", object_path(kind, namespace, name))
        text = yaml.safe_dump(manifest(obj), sort_keys=False)
        disposition = f'attachment; filename="{kind.singular}-{name}.yaml"'
        return Response(text, media_type="application/yaml",
                        headers={"Content-Disposition": disposition})  # fmt: skip

    @router.get(
        "/{name}/logs",
        response_model=Logs,
        responses=NOT_FOUND,
        operation_id=f"logs{kind.kind}",
        summary=f"The last lines of the logs of the pods a {kind.kind} owns",
    )
    async def object_logs(
        namespace: Namespace, name: Name, api: AsCaller, lines: LogLines = 100
    ) -> Logs:
        await api.call("GET", object_path(kind, namespace, name))  # 404 / 403 first
        selector = f"{LABEL_NAME}={kind.singular},{LABEL_INSTANCE}={name}"
        pods = await api.call(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        newest = sorted(
            pods.get("items") or [],
            key=lambda p: str(p["metadata"].get("creationTimestamp") or ""),
            reverse=True,
        )[:MAX_POD_LOGS]
        return Logs(
            items=[c for p in newest for c in await container_logs(api, namespace, p, lines)]
        )


def schema_router() -> APIRouter:
    """``GET /api/v1/schemas/{plural}``: each kind's spec schema as its CRD has it, so that a
    form (the portal's) is made from the same schema the apiserver validates with."""
    router = APIRouter(prefix="/api/v1/schemas", tags=["Schemas"])
    schemas = {
        kind.plural: KindSchema(
            kind=kind.kind,
            api_version=kind.api_version,
            plural=kind.plural,
            description=kind.description,
            mutable=not kind.immutable_spec,
            spec=model_schema(kind.spec_model),
        )
        for kind in KINDS
    }

    @router.get(
        "/{plural}",
        response_model=KindSchema,
        responses={404: {"model": Problem}},
        operation_id="kindSchema",
        summary="A kind's spec schema (from its CRD)",
    )
    async def kind_schema(plural: str) -> KindSchema:
        if plural not in schemas:
            raise ProblemError(404, f"no kind {plural!r}; one of {', '.join(schemas)}")
        return schemas[plural]

    return router


ROUTERS = [kind_router(kind) for kind in KINDS] + [schema_router()]
