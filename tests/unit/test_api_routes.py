"""The API's routes without a cluster: the caller and the apiserver-as-the-caller are replaced
with ``app.dependency_overrides``, so each route's own logic (bodies, errors, views and their
documented models) is tested alone. The real apiserver is the integration tests' business."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from kubeforge_api import deps
from kubeforge_api.app import create_app
from kubeforge_api.cluster import ApiserverError, UnauthenticatedError, User
from kubeforge_api.models import Catalog, Lineage, object_model
from kubeforge_api.settings import ApiSettings
from kubeforge_crds import MODELSERVER, WORKBENCH
from tests.cases import REPO, example

NS = "team-a"
USER = User("user-a", "uid-1", ("kubeforge:users",))


class FakeApiserver:
    """Objects by path; every call recorded; ``refuse`` makes the next call fail."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse: ApiserverError | None = None

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        self.calls.append((method, path))
        if self.refuse is not None:
            raise self.refuse
        if method == "POST":
            return {**kw["body"], "metadata": {**kw["body"]["metadata"], "uid": "new"}}
        if method == "PUT":
            return kw["body"]
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        listed = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
        if listed or (method == "GET" and path.endswith(("s", "events"))):
            return {"items": listed}
        raise ApiserverError(404, {"message": f"{path} not found"})

    async def items(self, kind: Any, namespace: str) -> list[Any]:
        return list((await self.call("GET", deps.object_path(kind, namespace)))["items"])


@pytest.fixture
def api() -> FakeApiserver:
    return FakeApiserver()


class FakeReviews:
    """The token reviews the front door makes: one token is user-a's, every other is rejected."""

    def __init__(self) -> None:
        self.reviews = 0

    def authenticate(self, token: str) -> User:
        self.reviews += 1
        if token != TOKEN:
            raise UnauthenticatedError("the bearer token was rejected by the cluster: unknown")
        return USER


TOKEN = "t-user-a"


@pytest.fixture
def client(api: FakeApiserver) -> Iterator[TestClient]:
    app = create_app(ApiSettings(), cluster=FakeReviews())  # type: ignore[arg-type]
    app.dependency_overrides[deps.as_caller] = lambda: api
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client


def _model_server(name: str = "bot") -> dict[str, Any]:
    obj = copy.deepcopy(example("ModelServer"))
    obj["metadata"] = {"name": name, "namespace": NS, "uid": "u-ms"}
    revision = {"revision": "r1", "uri": "s3://m/v1", "trafficPercent": 100, "modelFormat": "peft"}
    obj["status"] = {"phase": "Ready", "stable": revision, "trafficSplit": "100/0", "gpus": 1}
    return obj


def test_whoami_is_the_caller(client: TestClient) -> None:
    answer = client.get("/api/v1/whoami")
    assert answer.status_code == 200
    assert answer.json() == {"username": "user-a", "groups": ["kubeforge:users"]}


def test_no_bearer_token_is_401_saying_how(api: FakeApiserver) -> None:
    app = create_app(ApiSettings(), cluster=FakeReviews())  # type: ignore[arg-type]
    with TestClient(app) as client:
        answer = client.get(f"/api/v1/namespaces/{NS}/workbenches/x")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in answer.json()["detail"]
    assert api.calls == []  # nothing reached the apiserver


def test_a_create_with_a_bad_field_is_422_naming_it(client: TestClient, api: FakeApiserver) -> None:
    spec = copy.deepcopy(example("Workbench")["spec"])
    spec["resources"]["gpuz"] = 1
    answer = client.post(
        f"/api/v1/namespaces/{NS}/workbenches", json={"metadata": {"name": "nb"}, "spec": spec}
    )
    assert answer.status_code == 422
    assert [(e["field"], e["message"]) for e in answer.json()["detail"]] == [
        ("spec.resources.gpuz", "unknown field")
    ]
    assert api.calls == []


def test_a_create_goes_to_the_namespace_of_the_url(client: TestClient, api: FakeApiserver) -> None:
    body = {
        "metadata": {"name": "nb", "labels": {"team": "a"}},
        "spec": example("Workbench")["spec"],
    }
    answer = client.post(f"/api/v1/namespaces/{NS}/workbenches", json=body)
    assert answer.status_code == 201
    created = answer.json()
    assert created["metadata"]["namespace"] == NS
    assert created["kind"] == "Workbench"
    assert api.calls == [("POST", deps.object_path(WORKBENCH, NS))]
    object_model(WORKBENCH).model_validate(created)  # what the OpenAPI documents


def test_a_replace_cannot_rename(client: TestClient, api: FakeApiserver) -> None:
    api.objects[deps.object_path(MODELSERVER, NS, "bot")] = _model_server()
    body = {"metadata": {"name": "other"}, "spec": example("ModelServer")["spec"]}
    answer = client.put(f"/api/v1/namespaces/{NS}/modelservers/bot", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "metadata.name"
    assert ("PUT", deps.object_path(MODELSERVER, NS, "bot")) not in api.calls


def test_a_replace_keeps_the_resource_version_it_was_based_on(
    client: TestClient, api: FakeApiserver
) -> None:
    current = _model_server()
    current["metadata"]["resourceVersion"] = "7"
    api.objects[deps.object_path(MODELSERVER, NS, "bot")] = current
    body = {"metadata": {"resourceVersion": "5"}, "spec": example("ModelServer")["spec"]}
    answer = client.put(f"/api/v1/namespaces/{NS}/modelservers/bot", json=body)
    assert answer.status_code == 200
    sent = answer.json()
    assert sent["metadata"]["resourceVersion"] == "5"  # the apiserver answers 409 if stale
    assert "status" not in sent


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, {"message": "forbidden: user-a cannot get"}, 403),
        (409, {"message": "the object has been modified"}, 409),
        (500, {"message": "etcd is down"}, 502),
    ],
)
def test_apiserver_refusals_are_passed_on(
    client: TestClient, api: FakeApiserver, status: int, body: dict[str, Any], expected: int
) -> None:
    api.refuse = ApiserverError(status, body)
    answer = client.get(f"/api/v1/namespaces/{NS}/workbenches/nb")
    assert answer.status_code == expected
    assert body["message"] in answer.json()["detail"]


def test_apiserver_field_causes_become_field_errors(client: TestClient, api: FakeApiserver) -> None:
    cause = {"field": "spec.image", "message": "Required value", "reason": "FieldValueRequired"}
    api.refuse = ApiserverError(422, {"message": "invalid", "details": {"causes": [cause]}})
    body = {"metadata": {"name": "nb"}, "spec": example("Workbench")["spec"]}
    answer = client.post(f"/api/v1/namespaces/{NS}/workbenches", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"field": "spec.image", "message": "Required value", "type": "FieldValueRequired"}
    ]


def test_catalog_and_lineage_answer_what_their_models_document(
    client: TestClient, api: FakeApiserver
) -> None:
    api.objects[deps.object_path(MODELSERVER, NS, "bot")] = _model_server()
    got = client.get(f"/api/v1/namespaces/{NS}/catalog")
    assert got.status_code == 200
    catalog = Catalog.model_validate(got.json())
    assert [s.name for s in catalog.model_servers] == ["bot"]
    assert catalog.model_servers[0].stable is not None
    assert catalog.model_servers[0].stable.revision == "r1"
    lineage = client.get(f"/api/v1/namespaces/{NS}/modelservers/bot/lineage")
    assert lineage.status_code == 200
    assert Lineage.model_validate(lineage.json()).model_server.name == "bot"


def test_gpu_hours_without_prometheus_says_which_setting(client: TestClient) -> None:
    answer = client.get(f"/api/v1/namespaces/{NS}/gpu-hours")
    assert answer.status_code == 503
    assert "KUBEFORGE_API_PROMETHEUS_URL" in answer.json()["detail"]


def test_a_large_body_is_refused_before_it_is_read_or_the_token_checked() -> None:
    reviews = FakeReviews()
    app = create_app(ApiSettings(max_body_bytes=4096), cluster=reviews)  # type: ignore[arg-type]
    with TestClient(app) as client:
        big = client.post(f"/api/v1/namespaces/{NS}/workbenches", content=b"{" + b" " * 10_000)
        assert big.status_code == 413
        assert "over 4096 bytes" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it comes
            for _ in range(10):
                yield b" " * 1000

        streamed = client.post(
            f"/api/v1/namespaces/{NS}/workbenches",
            content=chunks(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert streamed.status_code == 413
        anonymous = client.post(f"/api/v1/namespaces/{NS}/workbenches", content=b"{}")
        assert anonymous.status_code == 401
    assert reviews.reviews == 1  # only the request that had a token was reviewed


def test_oversized_headers_are_refused(client: TestClient) -> None:
    answer = client.get("/api/v1/whoami", headers={"X-Padding": "x" * 20_000})
    assert answer.status_code == 431


def test_every_answer_carries_the_browser_security_headers(client: TestClient) -> None:
    for path in ("/", "/portal/app.js", "/api/v1/whoami", "/healthz", "/nowhere"):
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        assert "default-src 'self'" in csp, path
        assert "unsafe-inline" not in csp, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"


def test_the_docs_load_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200


def test_no_redirect_echoes_the_host_header(client: TestClient) -> None:
    answer = client.get("/api/v1/whoami/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert answer.status_code == 404
    assert "location" not in answer.headers


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metadata": {"resourceVersion": "abc"}}, "metadata.resourceVersion"),
        (
            {"spec": {"rollout": {"metrics": [{"name": "x", "type": "errorRate", "max": "inf"}]}}},
            "spec.rollout.metrics[0].max",
        ),
    ],
)
def test_values_the_apiserver_cannot_take_are_422_naming_the_field(
    client: TestClient, api: FakeApiserver, body: dict[str, Any], field: str
) -> None:
    api.objects[deps.object_path(MODELSERVER, NS, "bot")] = _model_server()
    full = {
        "metadata": body.get("metadata", {}),
        "spec": copy.deepcopy(example("ModelServer")["spec"]),
    }
    full["spec"].update(body.get("spec", {}))
    answer = client.put(f"/api/v1/namespaces/{NS}/modelservers/bot", json=full)
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["detail"]]
    assert not [c for c in api.calls if c[0] == "PUT"]


def test_gpu_hours_from_a_prometheus_that_answers_html_is_502_without_its_address(
    api: FakeApiserver,
) -> None:
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>login page of a proxy</html>")

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    app = create_app(ApiSettings(prometheus_url=url), cluster=FakeReviews())  # type: ignore[arg-type]
    app.dependency_overrides[deps.as_caller] = lambda: api
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            answer = client.get(f"/api/v1/namespaces/{NS}/gpu-hours")
    finally:
        server.shutdown()
    assert answer.status_code == 502
    assert "something other than a result" in answer.json()["detail"]
    assert "127.0.0.1" not in answer.text


def test_the_apis_own_token_is_sent_as_bearer_and_refreshed_as_the_client_loader_does() -> None:
    """In a pod the kubernetes client's in-cluster loader keeps the service account token as
    ``bearer <token>`` (lower case) and re-reads it through its refresh hook."""
    import httpx
    from kubernetes import client as k8s

    from kubeforge_api.cluster import _OwnToken

    cfg = k8s.Configuration()
    tokens = iter(["first", "rotated"])

    def refresh(c: k8s.Configuration) -> None:
        c.api_key = {"authorization": f"bearer {next(tokens)}"}

    cfg.refresh_api_key_hook = refresh
    auth = _OwnToken(cfg)
    sent = [next(auth.auth_flow(httpx.Request("GET", "https://apiserver/"))) for _ in range(2)]
    assert [r.headers["Authorization"] for r in sent] == ["Bearer first", "Bearer rotated"]


def test_a_manifest_is_what_kubectl_apply_needs_and_nothing_the_cluster_added(
    client: TestClient, api: FakeApiserver
) -> None:
    obj = _model_server()
    obj["metadata"] |= {
        "resourceVersion": "7",
        "managedFields": [{"manager": "kubectl"}],
        "labels": {"team": "a"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x"},
    }
    api.objects[f"{deps.object_path(MODELSERVER, NS)}/bot"] = obj
    res = client.get(f"/api/v1/namespaces/{NS}/modelservers/bot/manifest")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/yaml")
    assert 'filename="modelserver-bot.yaml"' in res.headers["content-disposition"]
    doc = yaml.safe_load(res.text)
    assert doc == {
        "apiVersion": obj["apiVersion"],
        "kind": "ModelServer",
        "metadata": {
            "name": "bot",
            "namespace": NS,
            "labels": {"team": "a"},
            "annotations": {"note": "x"},
        },
        "spec": obj["spec"],
    }
    missing = client.get(f"/api/v1/namespaces/{NS}/modelservers/nope/manifest")
    assert missing.status_code == 404


def test_each_kinds_schema_is_its_crds_and_an_unknown_kind_is_named(client: TestClient) -> None:
    crd = yaml.safe_load(
        (REPO / "crds" / "manifests" / "kubeforge.io_workbenches.yaml").read_text()
    )
    version = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    res = client.get("/api/v1/schemas/workbenches")
    assert res.status_code == 200
    body = res.json()
    assert (body["kind"], body["plural"], body["mutable"]) == ("Workbench", "workbenches", True)
    assert body["spec"]["properties"] == version["properties"]["spec"]["properties"]
    assert client.get("/api/v1/schemas/finetunejobs").json()["mutable"] is False
    unknown = client.get("/api/v1/schemas/pods")
    assert unknown.status_code == 404
    assert "no kind 'pods'; one of workbenches" in unknown.json()["detail"]


def _stored_workbench(api: FakeApiserver) -> dict[str, Any]:
    wb = copy.deepcopy(example("Workbench"))
    wb["metadata"] = {"name": "nb", "namespace": NS}
    api.objects[f"{deps.object_path(WORKBENCH, NS)}/nb"] = wb
    return wb


def test_logs_are_the_newest_pods_and_say_why_a_container_has_none(
    client: TestClient, api: FakeApiserver
) -> None:
    _stored_workbench(api)

    def pod(name: str, created: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": "notebook"}]},
            "status": {"phase": "Running"},
        }

    api.objects[f"/api/v1/namespaces/{NS}/pods/old"] = pod("old", "2026-01-01T00:00:00Z")
    api.objects[f"/api/v1/namespaces/{NS}/pods/nb-0"] = pod("nb-0", "2026-02-01T00:00:00Z")
    asked: list[tuple[str, dict[str, str] | None]] = []

    async def passthrough(path: str, params: dict[str, str] | None = None) -> bytes:
        asked.append((path, params))
        if "/old/" in path:
            raise ApiserverError(400, {"message": 'container "notebook" is waiting to start'})
        return b"line 1\nline 2\n"

    api.passthrough = passthrough  # type: ignore[attr-defined]
    res = client.get(f"/api/v1/namespaces/{NS}/workbenches/nb/logs?lines=2")
    assert res.status_code == 200
    items = res.json()["items"]
    assert [(i["pod"], i["text"]) for i in items] == [("nb-0", "line 1\nline 2\n"), ("old", "")]
    assert "waiting to start" in items[1]["problem"]
    assert asked[0] == (
        f"/api/v1/namespaces/{NS}/pods/nb-0/log",
        {"container": "notebook", "tailLines": "2"},
    )
    assert client.get(f"/api/v1/namespaces/{NS}/workbenches/nb/logs?lines=0").status_code == 422


def _sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_a_watch_is_the_list_then_each_change_as_server_sent_events(
    client: TestClient, api: FakeApiserver
) -> None:
    wb = _stored_workbench(api)
    watched: list[tuple[str, str]] = []

    async def watch(path: str, version: str) -> AsyncIterator[dict[str, Any]]:
        watched.append((path, version))
        yield {"type": "MODIFIED", "object": {**wb, "status": {"phase": "Running"}}}
        yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
        raise ApiserverError(410, {"message": "too old resource version"})

    api.watch = watch  # type: ignore[attr-defined]
    res = client.get(f"/api/v1/namespaces/{NS}/workbenches?watch=true")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/event-stream")
    events = _sse(res.text)
    assert [e for e, _ in events] == ["snapshot", "MODIFIED", "BOOKMARK", "error"]
    assert [o["metadata"]["name"] for o in events[0][1]["items"]] == ["nb"]
    assert events[1][1]["status"]["phase"] == "Running"
    assert events[3][1] == {"status": 410, "message": "too old resource version"}
    assert watched == [(deps.object_path(WORKBENCH, NS), "")]  # the fake's list has no version


def test_a_watch_the_caller_may_not_list_is_refused_before_the_stream(
    client: TestClient, api: FakeApiserver
) -> None:
    api.refuse = ApiserverError(403, {"message": 'workbenches is forbidden: User "user-a"'})
    res = client.get(f"/api/v1/namespaces/{NS}/workbenches?watch=true")
    assert res.status_code == 403
    assert "forbidden" in res.json()["detail"]
