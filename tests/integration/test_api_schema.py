"""schemathesis against the API's own OpenAPI schema, on the real apiserver: generated requests
for every operation, as user-a, half of them in a namespace of its own (so they reach real
objects), the rest wherever the generator goes; no input may produce a 5xx.

schemathesis's pytest plugin does not run under pytest 9, so each operation's hypothesis
strategy is driven here directly."""

from __future__ import annotations

import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from kubeforge_api.app import create_app
from kubeforge_api.settings import ApiSettings
from kubeforge_labs.canary import start_prometheus
from tests.integration.conftest import ISOLATED_PREFIX, Cluster
from tests.integration.test_api import _tokens

pytestmark = [pytest.mark.usefixtures("local_cluster")]

NS = f"{ISOLATED_PREFIX}schema-{uuid.uuid4().hex[:5]}"  # no operator reconciles here
EXAMPLES_PER_OPERATION = 30


def _exercise(operation: Any, label: str, headers: dict[str, str], codes: set[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        # the same examples in every run: a failure here reproduces, and whether some creates
        # get past validation (asserted below) does not depend on the draw
        derandomize=True,
    )
    def check(case: Any) -> None:
        params = case.path_parameters or {}
        if "namespace" in params and zlib.crc32(repr(params).encode()) % 2:
            params["namespace"] = NS
        if case.query and case.query.get("watch") not in (None, False, "false"):
            # a watch is a stream of two minutes: its answers are the unit tests' and the
            # portal's (test_portal.py) to check; here, the list it begins with
            case.query["watch"] = "false"
        response = case.call(headers=headers)
        codes.add(response.status_code)
        assert response.status_code < 500, (
            f"{label} answered {response.status_code}: {response.text[:500]}"
        )

    check()


def test_no_input_produces_a_server_error(cluster: Cluster, tmp_path: Path) -> None:
    cluster.kubectl("create", "namespace", NS)
    cluster.kubectl(
        "create", "rolebinding", "user-a-edit", "--clusterrole=edit", "--user=user-a", "-n", NS
    )
    headers = {"Authorization": f"Bearer {_tokens(cluster)['user-a']}"}
    prom = start_prometheus(tmp_path / "prometheus", [], 5)  # for the GPU-hours route
    app = create_app(
        ApiSettings(
            kubeconfig=Path(cluster.user_kubeconfig("kubeforge-api")), prometheus_url=prom.url
        )
    )
    seen: dict[str, set[int]] = {}
    try:
        with TestClient(app):  # one cluster connection for every call
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            for result in schema.get_all_operations():
                operation = result.ok()
                label = f"{operation.method.upper()} {operation.path}"
                _exercise(operation, label, headers, seen.setdefault(label, set()))
    finally:
        prom.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    assert len(seen) >= 25, seen  # every operation was exercised
    kinds_reached = [label for label, codes in seen.items() if codes & {200, 201}]
    assert any("POST" in label for label in kinds_reached), seen  # some creates got through
