"""The web portal in a real browser: Playwright driving Debian's Chromium against the API as a
real process (``python -m kubeforge_api``), on the local control plane with the session's
operator. Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect, sync_playwright
from sklearn.ensemble import RandomForestClassifier

from kubeforge_crds.contracts.drift import MonitorConfig
from kubeforge_labs.canary import start_api, start_runtime
from kubeforge_labs.drift import log_inference, start_drift_service, write_jsonl
from kubeforge_labs.kit import Proc, free_port
from kubeforge_pipelines.tinymodel import support_tickets
from tests.integration.conftest import ISOLATED_PREFIX, Cluster, OperatorProcess

pytestmark = [pytest.mark.usefixtures("local_cluster")]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RUN = uuid.uuid4().hex[:5]


DRIFT_PORT = free_port()  # where the API finds drift services (one, started by a test)
MODEL_PORT = free_port()  # and predictors (one runtime, started by a test)


@pytest.fixture(scope="module")
def api_url(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    api = start_api(
        cluster.user_kubeconfig("kubeforge-api"),
        tmp_path_factory.mktemp("api") / "api.log",
        drift_url_template=f"http://127.0.0.1:{DRIFT_PORT}",
        model_url_template=f"http://127.0.0.1:{MODEL_PORT}",
    )
    yield api.url
    api.stop()


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


def _token(cluster: Cluster, user: str) -> str:
    return str(json.loads((Path(cluster.kubeconfig).parent / "tokens.json").read_text())[user])


def _fresh_page(page: Page, api_url: str) -> None:
    """The portal, signed out. The page signs in by itself on load with the tab's stored token:
    that sign-in is let finish (whoami answered, or refused), then undone, so that it cannot
    race the form. (Not "network idle": the open tab's watch is a request that stays open.)"""
    page.goto(api_url)
    if page.evaluate("sessionStorage.getItem('kubeforge-token')"):
        page.wait_for_function(  # a function, not a string: the CSP allows no eval
            "() => document.querySelector('#who').textContent"
            " || document.querySelector('#signin-error').textContent"
        )
    if page.get_by_role("button", name="sign out").is_visible():
        page.get_by_role("button", name="sign out").click()


def _sign_in(page: Page, api_url: str, token: str) -> None:
    _fresh_page(page, api_url)
    page.get_by_test_id("token").fill(token)
    page.get_by_test_id("signin").click()
    expect(page.get_by_test_id("who")).to_contain_text("signed in as")


def _monitor(name: str, target: str, reference: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": name},
        "spec": {
            "target": {"modelServer": target},
            "reference": {"source": "uri", "uri": f"file://{reference}"},
        },
    }


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"portal-{name}.png"), full_page=True)


def test_sign_in_create_a_workbench_and_watch_it_become_ready(
    page: Page, api_url: str, cluster: Cluster, operator: OperatorProcess
) -> None:
    page.goto(api_url)
    page.get_by_test_id("token").fill("not-a-token")
    page.get_by_test_id("signin").click()
    expect(page.get_by_role("alert").first).to_contain_text("rejected by the cluster")
    page.get_by_test_id("token").fill(_token(cluster, "user-a"))
    page.get_by_test_id("signin").click()
    expect(page.get_by_test_id("who")).to_have_text("signed in as user-a")
    page.get_by_test_id("namespace").fill("team-a")
    page.get_by_test_id("namespace").press("Enter")
    page.get_by_test_id("namespace").dispatch_event("change")

    # the form is made from the CRD's schema; the apiserver's error is shown beside its field
    form = page.get_by_test_id("form-workbenches")
    name = f"portal-{RUN}"
    form.locator("[data-path='metadata.name']").fill(name)
    form.locator("[data-path='spec.image']").fill("quay.io/jupyter/minimal-notebook:2025-10-20")
    expect(form).to_contain_text("The persistent home volume")  # the CRD's description as help
    form.locator("details[data-group='spec.culling'] > summary").click()
    idle = form.locator("[data-path='spec.culling.idleTimeout']")
    expect(idle).to_have_attribute("placeholder", "default: 1h")
    idle.fill("30s")
    form.get_by_role("button", name="Create").click()
    expect(idle).to_have_attribute("aria-invalid", "true")
    expect(form.locator(f"#{idle.get_attribute('id')}-error")).to_contain_text(
        "idleTimeout must be at least"
    )
    _shot(page, "create-rejected")

    idle.fill("30m")
    form.get_by_role("button", name="Create").click()
    row = page.get_by_test_id("list-workbenches").locator(f"tr[data-name='{name}']")
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text("Running", timeout=90_000)
    expect(row.locator(".True")).to_be_visible(timeout=30_000)
    expect(row).to_contain_text("10Gi")  # the home volume's size, the CRD's default
    _shot(page, "workbench-ready")
    created = cluster.kubectl("get", "workbench", name, "-n", "team-a", "-o", "json").stdout
    spec = json.loads(created)["spec"]
    assert spec["culling"]["idleTimeout"] == "30m"
    assert spec["storage"] == {"size": "10Gi"}  # a default, applied by the apiserver, not sent

    # stopped and started from its row; its Events and its pod's logs through the API
    # (the portal's change is based on the spec's generation: the operator's status writes
    # while it stops or starts are no conflict)
    phase = row.locator("td").nth(1)
    row.get_by_role("button", name="stop").click()
    expect(phase).to_have_text("Stopped", timeout=60_000)
    row.get_by_role("button", name="start").click()
    expect(phase).to_have_text("Running", timeout=90_000)
    row.get_by_role("button", name="events").click()
    events = page.get_by_test_id("detail-workbenches").get_by_test_id("events")
    expect(events).to_contain_text("Stopped", timeout=15_000)  # the operator's Event
    row.get_by_role("button", name="logs").click()
    expect(page.get_by_test_id("detail-workbenches").get_by_test_id("logs")).to_contain_text(
        f"{name}-0 / notebook"
    )

    # a ModelServer watched by a DriftMonitor: its rollout history and drift view
    server = f"portal-ms-{RUN}"
    objects = [
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "ModelServer",
            "metadata": {"name": server},
            "spec": {
                "model": {"uri": "s3://models/portal/v1"},
                "runtime": {"modelFormat": "sklearn"},
            },
        },
        {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": f"{server}-watch"},
            "spec": {
                "target": {"modelServer": server},
                "reference": {"source": "uri", "uri": "s3://data/ref.csv"},
            },
        },
    ]
    for obj in objects:
        cluster.kubectl("apply", "-n", "team-a", "-f", "-", stdin=json.dumps(obj))
    page.get_by_role("button", name="Model catalog").click()
    expect(page.get_by_test_id("catalog")).to_contain_text(server, timeout=15_000)
    _shot(page, "catalog")
    page.get_by_role("button", name="ModelServers").click()
    page.get_by_test_id("list-modelservers").locator(f"tr[data-name='{server}']").get_by_role(
        "button", name="rollout and drift"
    ).click()
    detail = page.get_by_test_id("modelserver-detail")
    expect(detail.get_by_test_id("rollout-history")).to_be_visible(timeout=15_000)
    expect(detail).to_contain_text(f"{server}-watch")
    _shot(page, "modelserver")
    cluster.kubectl("delete", "workbench", name, "-n", "team-a", "--wait=false")
    for obj in objects:
        cluster.kubectl(
            "delete", obj["kind"].lower(), obj["metadata"]["name"], "-n", "team-a", "--wait=false"
        )


def _read(cluster: Cluster, kind: str, name: str) -> Any:
    return json.loads(cluster.kubectl("get", kind, name, "-n", "team-a", "-o", "json").stdout)


def _fill(form: Any, values: dict[str, str]) -> None:
    """Fill the form's fields by their paths, opening the groups they are in, as a user would."""
    for path, value in values.items():
        parts = path.split(".")
        for depth in range(2, len(parts)):
            group = form.locator(f"details[data-group='{'.'.join(parts[:depth])}']")
            if group.get_attribute("open") is None:
                group.locator("> summary").click()
        field = form.locator(f"[data-path='{path}']")
        if field.evaluate("el => el.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)


def test_each_kind_is_created_from_its_form_edited_and_exported_as_yaml(
    page: Page, api_url: str, cluster: Cluster, operator: OperatorProcess, tmp_path: Path
) -> None:
    _sign_in(page, api_url, _token(cluster, "user-a"))
    page.get_by_test_id("namespace").fill("team-a")
    page.get_by_test_id("namespace").dispatch_event("change")
    tune, server, monitor = f"pf-tune-{RUN}", f"pf-ms-{RUN}", f"pf-dm-{RUN}"

    page.get_by_role("button", name="FineTuneJobs").click()
    form = page.get_by_test_id("form-finetunejobs")
    _fill(form, {
        "metadata.name": tune,
        "spec.baseModel.uri": "hf://sshleifer/tiny-gpt2",
        "spec.dataset.uri": "s3://data/tickets.jsonl",
        "spec.output.uri": "s3://models/tickets",
        "spec.method.type": "lora",
        "spec.hyperparameters.learningRate": "-1",
    })  # fmt: skip
    form.get_by_role("button", name="Create").click()
    rate = form.locator("[data-path='spec.hyperparameters.learningRate']")
    expect(rate).to_have_attribute("aria-invalid", "true")
    expect(form.locator(f"#{rate.get_attribute('id')}-error")).to_contain_text("greater than 0")
    rate.fill("0.001")
    form.get_by_role("button", name="Create").click()
    expect(
        page.get_by_test_id("list-finetunejobs").locator(f"tr[data-name='{tune}']")
    ).to_be_visible(timeout=15_000)
    _shot(page, "finetunejob-form")
    ftj = json.loads(
        cluster.kubectl("get", "finetunejob", tune, "-n", "team-a", "-o", "json").stdout
    )
    assert ftj["spec"]["hyperparameters"]["learningRate"] == 0.001
    assert "lora" not in ftj["spec"]["method"]  # a default is the apiserver's to apply

    page.get_by_role("button", name="ModelServers").click()
    form = page.get_by_test_id("form-modelservers")
    _fill(form, {
        "metadata.name": server,
        "spec.model.uri": "s3://models/portal/v1",
        "spec.runtime.modelFormat": "sklearn",
        "spec.rollout.steps": "20, 100",
    })  # fmt: skip
    form.get_by_role("button", name="Create").click()
    row = page.get_by_test_id("list-modelservers").locator(f"tr[data-name='{server}']")
    expect(row).to_be_visible(timeout=15_000)
    # edited in the same form: the current spec filled in, the name fixed
    row.get_by_role("button", name="edit").click()
    expect(form.locator("[data-path='spec.rollout.steps']")).to_have_value("20, 100")
    expect(form.locator("[data-path='metadata.name']")).to_have_attribute("readonly", "")
    _fill(form, {"spec.replicas.max": "3"})
    form.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("detail-modelservers")).to_contain_text(f"saved {server}")
    ms = json.loads(
        cluster.kubectl("get", "modelserver", server, "-n", "team-a", "-o", "json").stdout
    )
    assert (ms["spec"]["replicas"]["max"], ms["spec"]["rollout"]["steps"]) == (3, [20, 100])

    page.get_by_role("button", name="DriftMonitors").click()
    form = page.get_by_test_id("form-driftmonitors")
    _fill(form, {"metadata.name": monitor, "spec.target.modelServer": server})
    form.get_by_role("button", name="Create").click()
    row = page.get_by_test_id("list-driftmonitors").locator(f"tr[data-name='{monitor}']")
    expect(row).to_be_visible(timeout=15_000)

    # its YAML, downloaded, is what kubectl apply takes back
    row.get_by_role("button", name="YAML").click()
    with page.expect_download() as download:
        page.get_by_test_id("yaml-download").click()
    saved = tmp_path / "monitor.yaml"
    download.value.save_as(saved)
    assert "status" not in saved.read_text()
    applied = cluster.kubectl("apply", "--dry-run=server", "-f", str(saved))
    assert f"driftmonitor.kubeforge.io/{monitor}" in applied.stdout
    _shot(page, "driftmonitor-yaml")
    for kind, name in (("finetunejob", tune), ("modelserver", server), ("driftmonitor", monitor)):
        cluster.kubectl("delete", kind, name, "-n", "team-a", "--wait=false")


def test_a_monitors_report_opens_in_the_portal(
    page: Page, api_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    """The report button shows the monitor's page (from its drift service, through the API as
    the caller) in a sandboxed frame."""
    name = f"portal-dm-{RUN}"
    reference = write_jsonl(tmp_path / "reference.jsonl", support_tickets(500, seed=1))
    monitor = _monitor(name, "none", reference)
    cluster.kubectl("apply", "-n", "team-a", "-f", "-", stdin=json.dumps(monitor))
    config = MonitorConfig(namespace="team-a", name=name, reference_uri=f"file://{reference}")
    service = start_drift_service(tmp_path, config, port=DRIFT_PORT)
    try:
        with httpx.Client(timeout=10) as client:
            rows = support_tickets(20, seed=2, products=["vpn"])
            log_inference(client, service.url, {"instances": rows}, {"predictions": [1] * 20})
            for _ in range(2):  # two evaluations of the window, as its interval would make
                client.post(f"{service.url}/evaluate").raise_for_status()
        _sign_in(page, api_url, _token(cluster, "user-a"))
        page.get_by_test_id("namespace").fill("team-a")
        page.get_by_test_id("namespace").dispatch_event("change")
        page.get_by_role("button", name="DriftMonitors").click()
        row = page.get_by_test_id("list-driftmonitors").locator(f"tr[data-name='{name}']")
        row.get_by_role("button", name="report").click()
        frame = page.frame_locator("[data-testid='monitor-report']")
        expect(frame.locator("h2").first).to_have_text("In short", timeout=15_000)
        expect(frame.locator("ul.verdict")).to_contain_text("The inputs moved")
        # the scores over time, drawn against their thresholds from the service's history
        history = page.get_by_test_id("drift-history")
        expect(history.get_by_test_id("history-drift-summary")).to_contain_text(
            re.compile(r"drift: [2-9] evaluations, each score as a share of its threshold")
        )
        expect(history.get_by_test_id("history-drift")).to_have_attribute(
            "aria-label", re.compile(r"the latest has over their thresholds: ")
        )
        expect(history.locator("canvas").first).to_be_visible()
        _shot(page, "monitor-report")
    finally:
        service.stop()
        cluster.kubectl("delete", "driftmonitor", name, "-n", "team-a", "--wait=false")


def _serve_churn_model(ns: str, isvc: str, tmp_path: Path) -> tuple[Path, Proc]:
    """A forest whose answer depends on income alone, served by the built-in runtime (a real
    process) as KServe would serve InferenceService ``isvc``; its training rows as reference."""
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(400, 4)), columns=["age", "income", "tenure", "visits"])
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(x, x["income"] > 0.5)
    (tmp_path / "model").mkdir()
    joblib.dump(model, tmp_path / "model" / "model.joblib")
    reference = write_jsonl(tmp_path / "reference.jsonl", x.to_dict("records"))
    runtime = start_runtime(
        tmp_path / "runtime", tmp_path / "model", name=isvc, namespace=ns, revision="r1",
        port=MODEL_PORT,
    )  # fmt: skip
    return reference, runtime


def test_a_logged_request_is_explained_in_the_portal(
    page: Page, api_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    """An inference id typed into the monitor's panel: the API takes the request the drift
    service logged under it and asks the monitored ModelServer's :explain, as the caller; the
    portal shows which inputs pushed the answer which way. In a namespace no operator
    reconciles, so that the ModelServer's status (its InferenceService) is set by the test."""
    ns, name, isvc = f"{ISOLATED_PREFIX}explain-{RUN}", "churn-watch", "churn-isvc"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl(
        "create", "rolebinding", "user-a-edit", "--clusterrole=edit", "--user=user-a", "-n", ns
    )
    reference, runtime = _serve_churn_model(ns, isvc, tmp_path)
    server = _served_by_uri("churn", {"purpose": "Says who will leave."})
    monitor = _monitor(name, "churn", reference)
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(server))
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(monitor))
    status = json.dumps({"status": {"inferenceService": isvc}})
    cluster.kubectl(
        "patch", "modelserver", "churn", "-n", ns, "--subresource=status", "--type=merge",
        "-p", status,
    )  # fmt: skip
    config = MonitorConfig(namespace=ns, name=name, reference_uri=f"file://{reference}")
    service = start_drift_service(tmp_path, config, port=DRIFT_PORT)
    try:
        rows = [[0.1, 2.0, -0.3, 0.5], [0.2, -1.5, 0.4, -0.1]]  # age, income, tenure, visits
        v2 = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": rows[0]}]}
        with httpx.Client(timeout=10) as client:
            log_inference(client, service.url, {"instances": rows}, None, "ticket-42")
            log_inference(client, service.url, v2, None, "ticket-v2")
            base = f"{api_url}/api/v1/namespaces/{ns}/driftmonitors/{name}/requests"
            a = {"Authorization": f"Bearer {_token(cluster, 'user-a')}"}
            b = {"Authorization": f"Bearer {_token(cluster, 'user-b')}"}
            unknown = client.get(f"{base}/nope/explanation", headers=a)
            assert unknown.status_code == 404
            assert "no request 'nope' in the window" in unknown.json()["detail"]
            other = client.get(f"{base}/ticket-v2/explanation", headers=a)
            assert other.status_code == 409
            assert "explanations take v1 requests" in other.json()["detail"]
            assert client.get(f"{base}/ticket-42/explanation", headers=b).status_code == 403
            one = client.get(f"{base}/ticket-42/explanation?instance=1", headers=a, timeout=60)
            assert one.status_code == 200, one.text
            (second,) = one.json()["explanations"]
            top = second["attributions"][0]
            assert (top["feature"], top["input"]) == ("income", -1.5)  # the second instance
            beyond = client.get(f"{base}/ticket-42/explanation?instance=2", headers=a)
            assert beyond.status_code == 422
            assert "has 2 instance(s): no 2" in beyond.json()["detail"]
        _sign_in(page, api_url, _token(cluster, "user-a"))
        page.get_by_test_id("namespace").fill(ns)
        page.get_by_test_id("namespace").dispatch_event("change")
        page.get_by_role("button", name="DriftMonitors").click()
        row = page.get_by_test_id("list-driftmonitors").locator(f"tr[data-name='{name}']")
        row.get_by_role("button", name="report").click()
        page.get_by_test_id("explain-id").fill("ticket-42")
        page.get_by_test_id("explain-form").get_by_role("button", name="explain").click()
        shown = page.get_by_test_id("explanation")
        expect(shown.locator("p.summary")).to_have_count(2, timeout=60_000)
        expect(shown.locator("p.summary").first).to_contain_text("Most of it: income = 2")
        first = shown.locator("tbody tr").first.locator("td")
        expect(first.nth(0)).to_have_text("income")
        expect(first.nth(2)).to_have_text("raised it")
        _shot(page, "explanation")
        page.get_by_test_id("explain-id").fill("gone")
        page.get_by_test_id("explain-form").get_by_role("button", name="explain").click()
        expect(shown.get_by_role("alert")).to_contain_text("no request 'gone' in the window")
    finally:
        service.stop()
        runtime.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_the_team_sees_its_quota(page: Page, api_url: str, cluster: Cluster) -> None:
    """The Quota tab: the namespace's LocalQueue, its ClusterQueue's quota per flavor and
    resource, what is used (Kueue's objects as a platform team writes them; no Kueue controller
    runs in this tier, so nothing is used yet and positions are not known)."""
    cq = f"portal-{RUN}"
    quota = [{"name": "nvidia.com/gpu", "nominalQuota": "2", "borrowingLimit": "1"}]
    group = {
        "coveredResources": ["nvidia.com/gpu"],
        "flavors": [{"name": "a100", "resources": quota}],
    }
    objects = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cq},
         "spec": {"namespaceSelector": {}, "cohortName": "research", "resourceGroups": [group]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": cq, "namespace": "team-a"}, "spec": {"clusterQueue": cq}},
    ]  # fmt: skip
    listed = {"apiVersion": "v1", "kind": "List", "items": objects}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(listed))
    try:
        _sign_in(page, api_url, _token(cluster, "user-a"))
        page.get_by_test_id("namespace").fill("team-a")
        page.get_by_test_id("namespace").dispatch_event("change")
        page.get_by_role("button", name="Quota").click()
        shown = page.get_by_test_id("quota-queues")
        expect(shown).to_contain_text(f"{cq} → ClusterQueue {cq} (cohort research)", timeout=15_000)
        row = shown.locator("tr", has_text="nvidia.com/gpu")
        expect(row).to_contain_text("0 of 2")
        expect(row).to_contain_text("may borrow 1")
        expect(shown).to_contain_text("Kueue's visibility API did not answer")
        # a dry run against the quota: one GPU fits, three do not (2 nominal, none used)
        fit = page.get_by_test_id(f"fit-{cq}")
        fit.locator("input[name='nvidia.com/gpu']").fill("1")
        fit.get_by_role("button", name="check").click()
        expect(fit.get_by_test_id("fit-answer")).to_contain_text("Fits now in flavor a100")
        fit.locator("input[name='nvidia.com/gpu']").fill("3")
        fit.get_by_role("button", name="check").click()
        expect(fit.get_by_test_id("fit-answer")).to_contain_text(
            "Does not fit now (closest: flavor a100); nvidia.com/gpu: asks 3, 2 free"
        )
        fit.locator("input[name='nvidia.com/gpu']").fill("lots")
        fit.get_by_role("button", name="check").click()
        expect(fit.get_by_test_id("fit-answer")).to_contain_text("requests")
        _shot(page, "quota")
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=json.dumps(listed))


def test_the_platform_admin_sees_every_team_and_a_member_is_told_why_not(
    page: Page, api_url: str, cluster: Cluster, operator: OperatorProcess
) -> None:
    """The Teams tab: refused to a team member with the reason; a platform admin's table of
    every Team (no Kueue controller in this tier: the queue is not active, and it says so)."""
    name = f"kf-portal-{RUN}"
    quota = {"flavors": [{"name": "a100", "resources": [{"name": "nvidia.com/gpu", "nominal": 2}]}]}
    team = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {"members": [{"kind": "User", "name": "user-a"}], "quota": quota},
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(team))
    try:
        _sign_in(page, api_url, _token(cluster, "user-a"))
        page.get_by_test_id("namespace").fill("team-a")
        page.get_by_test_id("namespace").dispatch_event("change")
        page.get_by_role("button", name="Teams", exact=True).click()
        expect(page.get_by_test_id("teams-list")).to_contain_text(
            "needs list on teams.kubeforge.io", timeout=15_000
        )
        _sign_in(page, api_url, _token(cluster, "admin"))
        page.get_by_role("button", name="Teams", exact=True).click()
        row = page.get_by_test_id("teams-list").locator(f"tr[data-name='{name}']")
        expect(row).to_contain_text("Pending", timeout=30_000)  # reconciled by the operator
        expect(row).to_contain_text(f"waiting for Kueue to activate ClusterQueue {name}")
        _shot(page, "teams")
    finally:
        cluster.kubectl("delete", "team", name, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_tables_follow_the_cluster_without_polling_and_an_expired_token_is_said(
    page: Page, api_url: str, cluster: Cluster
) -> None:
    _sign_in(page, api_url, _token(cluster, "user-a"))
    page.get_by_test_id("namespace").fill("team-a")
    page.get_by_test_id("namespace").dispatch_event("change")
    page.get_by_role("button", name="Workbenches").click()
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/workbenches" in r.url else None)
    name = f"live-{RUN}"
    body = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Workbench",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"image": "quay.io/jupyter/minimal-notebook:2025-10-20", "stopped": True},
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    row = page.get_by_test_id("list-workbenches").locator(f"tr[data-name='{name}']")
    expect(row).to_contain_text("Stopped", timeout=15_000)
    cluster.kubectl("delete", "workbench", name, "-n", "team-a", "--wait=false")
    expect(row).to_have_count(0, timeout=15_000)
    page.wait_for_timeout(4_000)  # what was polled every 3 s is not asked for again
    assert [u for u in reads if "watch=true" not in u] == []

    # a token the cluster no longer accepts ends the session with a message, not a dead page
    page.evaluate("state.token = 'revoked-token'")
    page.get_by_role("button", name="FineTuneJobs").click()
    expect(page.get_by_test_id("token")).to_be_visible(timeout=15_000)
    expect(page.locator("#signin-error")).to_contain_text("Your session ended")


def _decision(minutes_ago: float, step: int, action: str, split: str, reason: str, **values: float
              ) -> dict[str, Any]:  # fmt: skip
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "step": step,
        "action": action,
        "revision": "r-v2",
        "trafficSplit": split,
        "reason": reason,
        "measurements": values,
    }


TUNE_STATUS = {
    "phase": "Succeeded",
    "runId": "kf-tune-abc12",
    "datasetDigest": "9f" * 32,
    "model": {"name": "tickets", "version": "v3", "uri": "s3://models/tickets/v3"},
    "metrics": {"loss": 1.9, "baseLoss": 3.4, "perplexity": 6.7},
    "training": {
        "steps": 40,
        "lossCurve": [{"step": s, "loss": round(4.0 - s * 0.05, 3)} for s in range(5, 41, 5)],
    },
}


def test_a_rollout_and_a_training_run_are_drawn_from_their_status(
    page: Page, api_url: str, cluster: Cluster
) -> None:
    # a namespace the session's operator leaves alone: the status is the test's to write, as the
    # operator writes it during a canary and after a run
    ns = f"{ISOLATED_PREFIX}portal-{RUN}"
    cluster.kubectl("create", "namespace", ns)
    tune = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tune", "namespace": ns},
        "spec": {
            "baseModel": {"uri": "hf://sshleifer/tiny-gpt2"},
            "dataset": {"uri": "s3://data/tickets.jsonl"},
            "output": {"uri": "s3://models/tickets", "modelName": "tickets"},
        },
    }
    server = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": "bot", "namespace": ns},
        "spec": {"model": {"fineTuneJob": "tune"}},
    }
    for obj in (tune, server):
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
    cluster.kubectl("patch", "finetunejob", "tune", "-n", ns, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": TUNE_STATUS}))  # fmt: skip
    decisions = [
        _decision(9, 0, "start", "90/10", "canary at 10%"),
        _decision(6, 1, "advance", "75/25", "every gate passed", **{"error-rate": 0.001}),
    ]

    def write_status(split: str) -> None:
        status = {"status": {"phase": "Progressing", "trafficSplit": split, "decisions": decisions}}
        cluster.kubectl("patch", "modelserver", "bot", "-n", ns, "--subresource=status",
                        "--type=merge", "-p", json.dumps(status))  # fmt: skip

    write_status("75/25")
    try:
        _sign_in(page, api_url, _token(cluster, "admin"))
        page.get_by_test_id("namespace").fill(ns)
        page.get_by_test_id("namespace").dispatch_event("change")
        page.get_by_role("button", name="ModelServers").click()
        row = page.get_by_test_id("list-modelservers").locator("tr[data-name='bot']")
        row.get_by_role("button", name="rollout and drift").click()
        detail = page.get_by_test_id("modelserver-detail")
        summary = detail.get_by_test_id("rollout-summary")
        expect(summary).to_contain_text("10% (started) → 25% (advanced)", timeout=15_000)
        expect(detail.locator("canvas").first).to_be_visible()
        # the cursor on the second decision gives its reason and measurements
        x, y = page.evaluate(
            """() => { const u = state.chart, box = u.over.getBoundingClientRect();
                return [box.left + u.valToPos(u.data[0][1], "x"),
                        box.top + u.valToPos(u.data[1][1], "y")]; }"""
        )
        page.mouse.move(x, y)
        expect(detail.get_by_test_id("rollout-point")).to_contain_text("advance r-v2 at 75/25")
        expect(detail.get_by_test_id("rollout-point")).to_contain_text("error-rate 0.001")
        # the next decisions reach the open chart through the watch: a failed gate, a rollback
        decisions.append(
            _decision(3, 1, "hold", "75/25", "error-rate 0.2 > 0.05", **{"error-rate": 0.2})
        )
        decisions.append(_decision(1, 1, "rollback", "100/0", "error-rate 0.3 > 0.05"))
        write_status("100/0")
        expect(summary).to_contain_text(
            "25% (advanced) → 25% (held) → 0% (rolled back)", timeout=15_000
        )
        _shot(page, "rollout-chart")

        # the run's loss curve against its held-out loss, and its lineage down to the server
        page.get_by_role("button", name="FineTuneJobs").click()
        row = page.get_by_test_id("list-finetunejobs").locator("tr[data-name='tune']")
        row.get_by_role("button", name="training").click()
        training = page.get_by_test_id("detail-finetunejobs")
        expect(training.get_by_test_id("loss-summary")).to_contain_text(
            "training loss 3.75 at step 5 → 2 at step 40; held-out loss 3.4 before, 1.9 after"
        )
        expect(training.locator("canvas").first).to_be_visible()
        lineage = training.get_by_test_id("lineage")
        for part in ("s3://data/tickets.jsonl (sha256 9f9f", "kf-tune-abc12, 40 steps",
                     "tickets v3 (s3://models/tickets/v3)", "served by bot"):  # fmt: skip
            expect(lineage).to_contain_text(part)
        _shot(page, "training-chart")
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")


def _serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (axe-core comes bundled
    in axe-playwright-python: nothing is fetched)."""
    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_every_page_passes_the_accessibility_check(
    page: Page, api_url: str, cluster: Cluster
) -> None:
    _fresh_page(page, api_url)
    problems = {"sign-in": _serious_violations(page)}
    _sign_in(page, api_url, _token(cluster, "user-a"))
    page.get_by_test_id("namespace").fill("team-a")
    page.get_by_test_id("namespace").dispatch_event("change")
    expect(page.get_by_test_id("form-workbenches")).to_be_visible()
    loaded = {  # what each tab shows once its data came
        "Workbenches": "[data-testid=form-workbenches]",
        "FineTuneJobs": "[data-testid=form-finetunejobs]",
        "ModelServers": "[data-testid=form-modelservers]",
        "DriftMonitors": "[data-testid=form-driftmonitors]",
        "Model catalog": "#catalog-models tbody tr",
        "Model map": "#map-models tbody tr",
        "Quota": "#quota-queues > *",
        "Teams": "#teams-list > *",  # user-a's: the refusal, said in the tab
    }
    for tab, shown in loaded.items():
        page.get_by_role("button", name=tab, exact=True).click()
        expect(page.locator(shown).first).to_be_visible(timeout=15_000)
        closed = page.locator(".tab:not([hidden]) details:not([open]) > summary")
        while closed.count():  # every field of the forms, folded groups too (outer ones first)
            closed.first.click()
        problems[tab] = _serious_violations(page)
    # the keyboard reaches the forms: Tab from the namespace field lands on a control
    page.get_by_test_id("namespace").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") in ("BUTTON", "INPUT", "A")
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_other_team_sees_refusals_not_data(page: Page, api_url: str, cluster: Cluster) -> None:
    page.goto(api_url)
    page.get_by_role("button", name="sign out").click()
    page.get_by_test_id("token").fill(_token(cluster, "user-b"))
    page.get_by_test_id("signin").click()
    expect(page.get_by_test_id("who")).to_have_text("signed in as user-b")
    page.get_by_test_id("namespace").fill("team-a")
    page.get_by_test_id("namespace").dispatch_event("change")
    expect(page.locator("#error")).to_contain_text('User "user-b" cannot list', timeout=10_000)
    _shot(page, "forbidden")


def _served_by_uri(name: str, card: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"pvc://models/{name}"},
            "runtime": {"modelFormat": "sklearn"},
            "card": card,
        },
    }


def test_the_model_map_shows_each_caller_what_they_may_read(
    page: Page, api_url: str, cluster: Cluster
) -> None:
    """zoë may read team-a (through her group) and, here, team-b; user-b only team-b. The map
    lists models served by URI with their cards, says when it is partial, escapes a card's
    markup, and exports as CSV."""
    ocr, chat = f"map-ocr-{RUN}", f"map-chat-{RUN}"
    markup = "<img src=x onerror=alert(1)> answers chats"
    a = _served_by_uri(ocr, {"purpose": "Reads invoices.", "owner": "team-a", "license": "MIT"})
    b = _served_by_uri(chat, {"purpose": markup, "owner": "team-b"})
    cluster.kubectl("apply", "-n", "team-a", "-f", "-", stdin=json.dumps(a))
    cluster.kubectl("apply", "-n", "team-b", "-f", "-", stdin=json.dumps(b))
    binding = f"map-zoe-{RUN}"
    cluster.kubectl(
        "create", "rolebinding", binding, "--clusterrole=view", "--user=zoë", "-n", "team-b"
    )
    try:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            both = client.get(
                "/api/v1/modelmap", headers={"Authorization": f"Bearer {_token(cluster, 'zoë')}"}
            ).json()
            assert {"team-a", "team-b"} <= set(both["namespaces"])
            names = {(m["namespace"], m["model"]) for m in both["models"]}
            assert {("team-a", ocr), ("team-b", chat)} <= names
            listed = next(m for m in both["models"] if m["model"] == ocr)
            assert (listed["source"], listed["card"]["license"]) == ("uri", "MIT")
            assert both["partial"] is True
            assert both["hiddenNamespaces"] > 0
            b_only = client.get(
                "/api/v1/modelmap", headers={"Authorization": f"Bearer {_token(cluster, 'user-b')}"}
            ).json()
            assert "team-a" not in b_only["namespaces"]
            assert ("team-b", chat) in {(m["namespace"], m["model"]) for m in b_only["models"]}
            assert all(m["model"] != ocr for m in b_only["models"])
        _sign_in(page, api_url, _token(cluster, "zoë"))
        page.get_by_role("button", name="Model map").click()
        table = page.get_by_test_id("map-models")
        expect(table).to_contain_text("Reads invoices.", timeout=20_000)
        expect(table).to_contain_text(markup)  # shown as text
        expect(table.locator("img")).to_have_count(0)
        expect(page.get_by_test_id("map-summary")).to_contain_text("Partial:")
        _shot(page, "modelmap")
        with page.expect_download() as download:
            page.get_by_test_id("map-csv").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        by_model = {r["model"]: r for r in rows}
        assert by_model[ocr]["purpose"] == "Reads invoices."
        assert by_model[chat]["namespace"] == "team-b"
    finally:
        cluster.kubectl("delete", "rolebinding", binding, "-n", "team-b", check=False)
        cluster.kubectl("delete", "modelserver", ocr, "-n", "team-a", "--wait=false", check=False)
        cluster.kubectl("delete", "modelserver", chat, "-n", "team-b", "--wait=false", check=False)
