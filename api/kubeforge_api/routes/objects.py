"""CRUD and Events of the four kinds, per namespace, as the caller. The request bodies and the
documented answers are each kind's own models (``models.create_body``, ``models.object_model``);
the apiserver's answers are passed on as they are (a list of a thousand objects is not
re-encoded)."""

# No `from __future__ import annotations`: the per-kind body models are made at run time, and
# FastAPI resolves the route functions' annotations when the routes are added.

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from kubeforge_api.deps import AsCaller, Name, Namespace, object_path
from kubeforge_api.errors import ERRORS, NOT_FOUND, Problem, ProblemError
from kubeforge_api.models import Events, create_body, list_model, object_model, update_body
from kubeforge_crds import KINDS, KindInfo

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
    so that a change made since answers 409); a body naming another object is refused."""
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
        responses=ERRORS,
        operation_id=f"list{kind.kind}",
        summary=f"List {kind.kind}s",
    )
    async def list_objects(namespace: Namespace, api: AsCaller) -> Response:
        raw = await api.passthrough(object_path(kind, namespace))
        return Response(raw, media_type="application/json")

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
        obj = replaced(await api.call("GET", path), name, body)
        return JSONResponse(await api.call("PUT", path, body=obj))

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

    return router


ROUTERS = [kind_router(kind) for kind in KINDS]
