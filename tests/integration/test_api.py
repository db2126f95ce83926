"""The REST API against the real apiserver, as the local control plane's ordinary users: user-a
may edit in team-a, user-b in team-b (the built-in ``edit`` role, to which kubeforge's
aggregated ClusterRoles add the four kinds). The API runs with its own identity, which may only
review tokens and impersonate; the audit log shows every write was made as the caller."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kubeforge_api.app import create_app
from kubeforge_api.settings import ApiSettings
from kubeforge_crds import KINDS
from kubeforge_crds.contracts.drift import MonitorConfig
from kubeforge_labs.canary import start_prometheus
from kubeforge_labs.drift import log_inference, start_drift_service, write_jsonl
from kubeforge_pipelines.tinymodel import support_tickets
from tests.cases import example
from tests.integration.conftest import Cluster, OperatorProcess, wait_until

pytestmark = [pytest.mark.usefixtures("local_cluster")]

TEAMS = {"user-a": "team-a", "user-b": "team-b"}
RUN = uuid.uuid4().hex[:5]


def _tokens(cluster: Cluster) -> dict[str, str]:
    return dict(json.loads((Path(cluster.kubeconfig).parent / "tokens.json").read_text()))


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[TestClient]:
    settings = ApiSettings(kubeconfig=Path(cluster.user_kubeconfig("kubeforge-api")))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def auth(cluster: Cluster) -> dict[str, dict[str, str]]:
    return {u: {"Authorization": f"Bearer {t}"} for u, t in _tokens(cluster).items()}


def _body(kind: str, name: str) -> dict[str, Any]:
    spec = copy.deepcopy(example(kind)["spec"])
    return {"metadata": {"name": name, "labels": {"test": RUN}}, "spec": spec}


def _base(plural: str, ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/{plural}"


def test_whoami_and_missing_or_bad_tokens(api: TestClient, auth: dict[str, dict[str, str]]) -> None:
    me = api.get("/api/v1/whoami", headers=auth["user-a"])
    assert me.status_code == 200
    assert me.json()["username"] == "user-a"
    assert "kubeforge:users" in me.json()["groups"]
    none = api.get(_base("workbenches", "team-a"))
    assert none.status_code == 401
    assert "no bearer token" in none.json()["detail"]
    assert none.headers["www-authenticate"] == "Bearer"
    bad = api.get(_base("workbenches", "team-a"), headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert "rejected by the cluster" in bad.json()["detail"]


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_each_user_manages_their_namespace_and_is_refused_the_other(
    api: TestClient, auth: dict[str, dict[str, str]], cluster: Cluster, kind: str
) -> None:
    """The matrix: for every route and verb, the owner succeeds in their namespace, and the other
    user gets 403 naming what RBAC refused, for an object that exists."""
    plural = next(k.plural for k in KINDS if k.kind == kind)
    name = f"api-{kind.lower()}-{RUN}"
    offset = cluster.audit_offset()
    for user, ns in TEAMS.items():
        other = next(u for u in TEAMS if u != user)
        h, oh = auth[user], auth[other]
        base = _base(plural, ns)
        # the other user, on everything in this namespace
        assert api.post(base, json=_body(kind, name), headers=oh).status_code == 403
        created = api.post(base, json=_body(kind, name), headers=h)
        assert created.status_code == 201, created.text
        assert created.json()["metadata"]["namespace"] == ns
        refusals = {
            "list": api.get(base, headers=oh),
            "get": api.get(f"{base}/{name}", headers=oh),
            "replace": api.put(f"{base}/{name}", json=_body(kind, name), headers=oh),
            "events": api.get(f"{base}/{name}/events", headers=oh),
            "delete": api.delete(f"{base}/{name}", headers=oh),
        }
        for verb, answer in refusals.items():
            assert answer.status_code == 403, (verb, answer.text)
            assert f'User "{other}" cannot' in answer.json()["detail"], verb
        # the owner, on everything
        listed = api.get(base, headers=h)
        assert listed.status_code == 200
        assert name in [o["metadata"]["name"] for o in listed.json()["items"]]
        got = api.get(f"{base}/{name}", headers=h)
        assert got.status_code == 200
        changed = _body(kind, name)
        changed["metadata"] = {"labels": {"test": RUN, "edited": "yes"}}
        replaced = api.put(f"{base}/{name}", json=changed, headers=h)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["metadata"]["labels"]["edited"] == "yes"
        assert api.get(f"{base}/{name}/events", headers=h).status_code == 200
        assert api.delete(f"{base}/{name}", headers=h).status_code == 200
    # every write reached the apiserver as the caller, none as the API itself
    writes = []
    with cluster.audit_log.open() as f:
        f.seek(offset)
        for line in f:
            event = json.loads(line)
            ref = event.get("objectRef", {})
            if ref.get("resource") == plural and event.get("stage") == "ResponseComplete":
                writes.append(
                    (
                        event["user"]["username"],
                        (event.get("impersonatedUser") or {}).get("username"),
                        event["verb"],
                        event["responseStatus"]["code"],
                    )
                )
    api_writes = [w for w in writes if w[0] == "kubeforge-api"]
    assert api_writes, "the API's writes are in the audit log"
    assert all(w[1] in TEAMS for w in api_writes), api_writes  # always impersonating


def test_errors_name_the_field_and_the_conflict(
    api: TestClient, auth: dict[str, dict[str, str]], cluster: Cluster
) -> None:
    h = auth["user-a"]
    base = _base("workbenches", "team-a")
    bad = _body("Workbench", f"bad-{RUN}")
    bad["spec"]["culling"] = {"idleTimeout": "30s"}
    answer = api.post(base, json=bad, headers=h)
    assert answer.status_code == 422
    fields = [d["field"] for d in answer.json()["detail"]]
    assert "spec.culling.idleTimeout" in fields, answer.json()
    unknown = _body("Workbench", f"bad-{RUN}")
    unknown["spec"]["gpu"] = 1
    answer = api.post(base, json=unknown, headers=h)
    assert answer.status_code == 422
    assert any(d["field"] == "spec.gpu" for d in answer.json()["detail"])
    assert (
        api.post(base, json={"metadata": {"name": "Not_A_Name"}, "spec": {}}, headers=h).status_code
        == 422
    )
    assert api.get(f"{base}/does-not-exist-{RUN}", headers=h).status_code == 404
    name = f"dup-{RUN}"
    assert api.post(base, json=_body("Workbench", name), headers=h).status_code == 201
    again = api.post(base, json=_body("Workbench", name), headers=h)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    stale = _body("Workbench", name)
    stale["metadata"] = {"resourceVersion": "1"}
    conflict = api.put(f"{base}/{name}", json=stale, headers=h)
    assert conflict.status_code == 409, conflict.text
    # based on the spec's generation: a status write since is no conflict, a spec change is
    live = api.get(f"{base}/{name}", headers=h).json()
    generation = live["metadata"]["generation"]
    cluster.kubectl(
        "patch", "workbench", name, "-n", "team-a", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Pending"}}),
    )  # fmt: skip
    edit = _body("Workbench", name)
    edit["metadata"] = {"generation": generation}
    edit["spec"]["culling"] = {"enabled": False}
    saved = api.put(f"{base}/{name}", json=edit, headers=h)
    assert saved.status_code == 200, saved.text
    assert saved.json()["metadata"]["generation"] == generation + 1
    late = api.put(f"{base}/{name}", json=edit, headers=h)  # still based on the old spec
    assert late.status_code == 409, late.text
    assert f"generation {generation}, now {generation + 1}" in late.json()["detail"]
    assert api.delete(f"{base}/{name}", headers=h).status_code == 200
    assert api.get("/api/v1/namespaces/Team_A/workbenches", headers=h).status_code == 422


def test_gpu_hours_come_from_the_operators_metrics(
    cluster: Cluster,
    operator: OperatorProcess,
    auth: dict[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    target = operator.metrics_url.removeprefix("http://").removesuffix("/metrics")
    prom = start_prometheus(tmp_path / "prometheus", [target], 1)
    prices = {"NVIDIA-A100-SXM4-80GB": 3.2, "NVIDIA-H100-80GB-HBM3": 4.0}
    settings = ApiSettings(
        kubeconfig=Path(cluster.user_kubeconfig("kubeforge-api")),
        prometheus_url=prom.url,
        gpu_prices=prices,
        currency="EUR",
    )
    name = f"gpu-{RUN}"
    base = _base("workbenches", "team-a")
    try:
        with TestClient(create_app(settings)) as api:
            spec = copy.deepcopy(example("Workbench", "gpu-notebook")["spec"])
            spec.pop("dataConnections")  # no Secret here: the GPU is what this test is about
            body = {"metadata": {"name": name}, "spec": spec}
            assert api.post(base, json=body, headers=auth["user-a"]).status_code == 201
            wait_until(
                lambda: (
                    (
                        api.get(f"{base}/{name}", headers=auth["user-a"]).json().get("status") or {}
                    ).get("gpus")
                    == 1
                ),
                90,
                what="the GPU Workbench to hold its GPU",
            )
            now = api.get("/api/v1/namespaces/team-a/gpus", headers=auth["user-a"]).json()
            assert {"kind": "Workbench", "name": name, "gpus": 1} in now["objects"]

            def used() -> dict[str, Any] | None:
                got = api.get(
                    "/api/v1/namespaces/team-a/gpu-hours",
                    params={"hours": 0.05},
                    headers=auth["user-a"],
                )
                assert got.status_code == 200, got.text
                data = dict(got.json())
                return data if data["byKind"].get("Workbench", 0) > 0 else None

            data = wait_until(used, 60, what="GPU-hours from Prometheus")
            # at most one GPU over 3 minutes: a small, positive number of GPU-hours
            assert 0 < data["byKind"]["Workbench"] <= 0.05 * (now["total"] + 1)
            _the_map_prices_the_gpu_hours(api, auth["user-a"], name)
            refused = api.get("/api/v1/namespaces/team-a/gpu-hours", headers=auth["user-b"])
            assert refused.status_code == 403
            unset = create_app(ApiSettings(kubeconfig=settings.kubeconfig))
            with TestClient(unset) as bare:
                answer = bare.get("/api/v1/namespaces/team-a/gpu-hours", headers=auth["user-a"])
                assert answer.status_code == 503
                assert "KUBEFORGE_API_PROMETHEUS_URL" in answer.json()["detail"]
            api.delete(f"{base}/{name}", headers=auth["user-a"])
    finally:
        prom.stop()


def _the_map_prices_the_gpu_hours(api: TestClient, headers: dict[str, str], name: str) -> None:
    """The model map's compute costs, from the same Prometheus: the Workbench's GPU-hours (of
    its product, the A100 its spec asks for) times that product's price."""
    answer = api.get("/api/v1/namespaces/team-a/modelmap", params={"hours": 0.05}, headers=headers)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    (held,) = [c for c in data["compute"] if (c["kind"], c["name"]) == ("Workbench", name)]
    assert held["product"] == "NVIDIA-A100-SXM4-80GB"
    assert held["gpuHours"] > 0
    assert held["cost"] == pytest.approx(held["gpuHours"] * 3.2)
    assert data["currency"] == "EUR"
    assert any(
        "'NVIDIA-H100-80GB-HBM3', which no GPU in the period had" in w for w in data["warnings"]
    )


def test_each_user_sees_the_namespaces_they_may_use(
    api: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    for user, ns in TEAMS.items():
        got = api.get("/api/v1/namespaces", headers=auth[user])
        assert got.status_code == 200, got.text
        names = got.json()["items"]
        other = next(n for u, n in TEAMS.items() if u != user)
        assert ns in names
        assert other not in names
    admin = api.get("/api/v1/namespaces", headers=auth["admin"]).json()["items"]
    assert {"team-a", "team-b", "kube-system"} <= set(admin)  # may list them all


def test_a_service_account_token_works_within_its_rbac(api: TestClient, cluster: Cluster) -> None:
    """A token from `kubectl create token` (a CI system's, a pipeline's) is the service account:
    it may do what its RoleBinding allows in its namespace, and nothing in another."""
    sa = f"ci-{RUN}"
    cluster.kubectl("create", "serviceaccount", sa, "-n", "team-a")
    cluster.kubectl(
        "create",
        "rolebinding",
        sa,
        "--clusterrole=edit",
        f"--serviceaccount=team-a:{sa}",
        "-n",
        "team-a",
    )
    try:
        token = cluster.kubectl("create", "token", sa, "-n", "team-a").stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        me = api.get("/api/v1/whoami", headers=headers)
        assert me.json()["username"] == f"system:serviceaccount:team-a:{sa}"
        mine = wait_until(
            lambda: (
                (r := api.get(_base("workbenches", "team-a"), headers=headers)).status_code == 200
                and r
            ),
            30,
            what="the RoleBinding to take effect",
        )
        assert mine.json()["kind"] == "WorkbenchList"
        created = api.post(
            _base("workbenches", "team-a"), json=_body("Workbench", sa), headers=headers
        )
        assert created.status_code == 201, created.text
        theirs = api.get(_base("workbenches", "team-b"), headers=headers)
        assert theirs.status_code == 403
        assert f"system:serviceaccount:team-a:{sa}" in theirs.json()["detail"]
    finally:
        cluster.kubectl("delete", "workbench", sa, "-n", "team-a", "--wait=false", check=False)
        cluster.kubectl("delete", "rolebinding,serviceaccount", sa, "-n", "team-a", check=False)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_anonymous_large_bodies_cost_the_running_api_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The API as it runs (uvicorn): 10 MB of JSON without a token is refused before it is
    read, and the process does not grow; a bad token is reviewed once, not once per request."""
    import httpx

    from kubeforge_labs.canary import start_api

    api = start_api(cluster.user_kubeconfig("kubeforge-api"), tmp_path / "api.log")
    try:
        url = f"{api.url}/api/v1/namespaces/team-a/workbenches"
        with httpx.Client(timeout=30) as http:
            http.get(f"{api.url}/healthz")
            before = _rss_kib(api.proc.pid)
            big = b'{"metadata": {"name": "x"}, "spec": {"image": "' + b"a" * (10 << 20) + b'"}}'
            for _ in range(3):
                refused = http.post(url, content=big, headers={"Content-Type": "application/json"})
                assert refused.status_code == 413
            grown = _rss_kib(api.proc.pid) - before
            assert grown < 5 * 1024, f"the API grew by {grown} KiB"
            offset = cluster.audit_offset()
            for _ in range(5):
                bad = http.get(url, headers={"Authorization": "Bearer not-a-token"})
                assert bad.status_code == 401
        reviews = [w for w in cluster.writes_since(offset, "kubeforge-api") if "tokenreviews" in w]
        assert len(reviews) == 1, reviews
    finally:
        api.stop()


def test_a_caller_whose_names_are_not_ascii(api: TestClient, cluster: Cluster) -> None:
    """zoë (group équipe-a, which may view team-a) is impersonated with her names as they are."""
    headers = {"Authorization": f"Bearer {_tokens(cluster)['zoë']}"}
    me = api.get("/api/v1/whoami", headers=headers)
    assert me.status_code == 200
    assert me.json()["username"] == "zoë"
    assert "équipe-a" in me.json()["groups"]
    assert api.get(_base("workbenches", "team-a"), headers=headers).status_code == 200
    refused = api.get(_base("workbenches", "team-b"), headers=headers)
    assert refused.status_code == 403
    assert "zoë" in refused.json()["detail"]


def test_a_team_sees_its_queues_quota_and_whether_a_request_fits(
    api: TestClient, auth: dict[str, dict[str, str]], cluster: Cluster
) -> None:
    """Kueue's objects as a platform team writes them (no Kueue controller in this tier: no
    usage yet, and no visibility API, so positions are null, never guessed). user-a reads
    team-a's queue through its own roles; the ClusterQueue behind it with the API's identity;
    user-b is refused."""
    cq = f"api-{RUN}"
    quota = [{"name": "cpu", "nominalQuota": "8"}, {"name": "nvidia.com/gpu", "nominalQuota": "2"}]
    group = {"coveredResources": ["cpu", "nvidia.com/gpu"],
             "flavors": [{"name": "a100", "resources": quota}]}  # fmt: skip
    objects = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cq},
         "spec": {"namespaceSelector": {}, "resourceGroups": [group]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": cq, "namespace": "team-a"}, "spec": {"clusterQueue": cq}},
    ]  # fmt: skip
    listed = {"apiVersion": "v1", "kind": "List", "items": objects}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(listed))
    try:
        answer = api.get("/api/v1/namespaces/team-a/queues", headers=auth["user-a"])
        assert answer.status_code == 200, answer.text
        mine = next(q for q in answer.json()["queues"] if q["name"] == cq)
        assert mine["clusterQueue"] == cq
        assert mine["pending"] is None  # Kueue's visibility API is not served here
        assert [(r["resource"], r["nominal"], r["used"]) for r in mine["quota"]] == [
            ("cpu", 8.0, 0.0),
            ("nvidia.com/gpu", 2.0, 0.0),
        ]
        fit = f"/api/v1/namespaces/team-a/queues/{cq}/fit"
        small = api.post(fit, json={"requests": {"nvidia.com/gpu": "2"}}, headers=auth["user-a"])
        assert small.json() == {"fits": True, "clusterQueue": cq, "flavor": "a100", "short": []}
        big = api.post(fit, json={"requests": {"nvidia.com/gpu": "3"}}, headers=auth["user-a"])
        assert big.json()["short"] == [
            {"resource": "nvidia.com/gpu", "requested": 3.0, "free": 2.0}
        ]
        bad = api.post(fit, json={"requests": {"cpu": "lots"}}, headers=auth["user-a"])
        assert bad.status_code == 422
        assert "requests.cpu: 'lots' is not a Kubernetes quantity" in bad.text
        missing = api.post(
            "/api/v1/namespaces/team-a/queues/nope/fit",
            json={"requests": {"cpu": "1"}},
            headers=auth["user-a"],
        )
        assert missing.status_code == 404
        assert "LocalQueue nope does not exist in team-a" in missing.text
        other = api.get("/api/v1/namespaces/team-a/queues", headers=auth["user-b"])
        assert other.status_code == 403
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=json.dumps(listed))


def test_ground_truth_reaches_the_monitor_from_its_team_only(
    cluster: Cluster, auth: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    """Labels through the API, as the caller: RBAC reviewed on driftmonitors/groundtruth, then
    passed on to the monitor's drift service (a real one, with the DriftMonitor's settings)."""
    name, ns = f"gt-{RUN}", "team-a"
    reference = write_jsonl(tmp_path / "reference.jsonl", support_tickets(200, seed=1))
    truth = {"task": "classification", "metrics": [{"name": "accuracy", "threshold": 0.8}]}
    spec = {
        "target": {"modelServer": "bot"},
        "reference": {"source": "uri", "uri": f"file://{reference}"},
        "groundTruth": truth | {"minLabels": 1},
    }
    config = MonitorConfig(
        namespace=ns,
        name=name,
        reference_uri=f"file://{reference}",
        ground_truth={"task": "classification", "metrics": {"accuracy": 0.8}, "minLabels": 1},
    )
    service = start_drift_service(tmp_path, config)
    settings = ApiSettings(
        kubeconfig=Path(cluster.user_kubeconfig("kubeforge-api")), drift_url_template=service.url
    )
    base, a = _base("driftmonitors", ns), auth["user-a"]
    try:
        with TestClient(create_app(settings)) as api:
            body = {"metadata": {"name": name}, "spec": spec}
            assert api.post(base, json=body, headers=a).status_code == 201
            without = {k: v for k, v in spec.items() if k != "groundTruth"}
            plain = {"metadata": {"name": f"{name}-plain"}, "spec": without}
            assert api.post(base, json=plain, headers=a).status_code == 201
            row = support_tickets(1, seed=2)[0]
            with httpx.Client(timeout=10) as client:
                for answer in log_inference(
                    client, service.url, {"instances": [row]}, {"predictions": [1]}, "p-1"
                ):
                    assert answer.status_code == 202
            url = f"{base}/{name}/groundtruth"
            labels = [{"id": "p-1", "label": 1}, {"id": "nope", "label": 0}]
            taken = api.post(url, json={"labels": labels}, headers=a)
            assert taken.status_code == 200, taken.text
            assert (taken.json()["accepted"], taken.json()["windowLabels"]) == (1, 1)
            assert [r["reason"] for r in taken.json()["rejected"]] == ["unknown_id"]
            none = api.post(url, json={"labels": labels[1:]}, headers=a)
            assert none.status_code == 422
            assert "no prediction logged with id 'nope'" in none.json()["rejected"][0]["message"]
            malformed = api.post(url, json={"labels": [{"id": "p-1"}]}, headers=a)
            assert malformed.status_code == 422
            assert "exactly one of label and labels" in malformed.text
            refused = api.post(url, json={"labels": labels}, headers=auth["user-b"])
            assert refused.status_code == 403
            assert "create on driftmonitors/groundtruth" in refused.json()["detail"]
            missing = api.post(f"{base}/nope/groundtruth", json={"labels": labels}, headers=a)
            assert missing.status_code == 404
            unset = api.post(f"{base}/{name}-plain/groundtruth", json={"labels": labels}, headers=a)
            assert unset.status_code == 409
            assert "set its spec.groundTruth" in unset.json()["detail"]
            page = api.get(f"{base}/{name}/report", headers=a)
            assert page.status_code == 200, page.text
            assert page.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in page.headers["content-security-policy"]  # no inline
            assert "<h2>In short</h2>" in page.text
            assert "The answers' quality has not been scored yet" in page.text
            assert api.get(f"{base}/{name}/report", headers=auth["user-b"]).status_code == 403
            service.stop()
            assert api.get(f"{base}/{name}/report", headers=a).status_code == 503
            down = api.post(url, json={"labels": labels}, headers=a)
            assert down.status_code == 503
            assert f"the drift service of DriftMonitor {name} does not answer" in down.text
    finally:
        service.stop()
        cluster.kubectl("delete", "driftmonitor", name, f"{name}-plain", "-n", ns, check=False)
