"""The status code the runtime counts and logs for a request its app answered without a response
(``server.InferenceMetrics`` under a real uvicorn, as ``server.serve_on`` serves it): 499 when
the client had gone away (the app was told so), and uvicorn's own 500 when the client was still
waiting, counted and logged as the 500 the client got, not as the client's leaving."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from kubeforge_labs.kit import free_port
from kubeforge_runtimes.faults import FaultInjector
from kubeforge_runtimes.server import (
    REQUESTS,
    InferenceMetrics,
    RuntimeSettings,
    without_access_log,
)

pytestmark = pytest.mark.no_cluster  # one uvicorn in this process

NAME = "codes"


async def no_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that returns without a response: at once for v1, after the client has gone away
    for v2 (it reads until told so)."""
    if scope["type"] != "http":
        return
    if scope["path"].startswith("/v2/"):
        while (await receive())["type"] != "http.disconnect":
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    settings = RuntimeSettings(model_name=NAME, namespace="codes-ns", revision="codes-r")
    front = InferenceMetrics(no_answer, settings, FaultInjector())
    port = free_port()
    config = uvicorn.Config(
        front, host="127.0.0.1", port=port, log_level="warning", http=without_access_log()
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(running.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)


def counted(protocol: str, code: str) -> float:
    labels = ("codes-ns", NAME, "codes-r", "", protocol, code)
    return float(REQUESTS.labels(*labels)._value.get())


def test_no_answer_to_a_waiting_client_is_the_500_it_got(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = counted("v1", "500"), counted("v1", "499")
    access = logging.getLogger("uvicorn.access")  # uvicorn's config stops it propagating
    access.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            answer = httpx.post(f"{server}/v1/models/{NAME}:predict", json={"instances": [1]})
    finally:
        access.removeHandler(caplog.handler)
    assert answer.status_code == 500  # uvicorn's own, the app having sent nothing
    assert (counted("v1", "500"), counted("v1", "499")) == (before[0] + 1, before[1])
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) == 1, lines  # the runtime's line alone, as serve_on serves it
    assert f'"POST /v1/models/{NAME}' in lines[0]
    assert lines[0].endswith(" 500")


def test_no_answer_to_a_client_that_left_is_its_leaving(server: str) -> None:
    before = counted("v2", "499"), counted("v2", "500")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/v2/models/{NAME}/infer", json={"inputs": []}, timeout=0.3)
    deadline = time.monotonic() + 10
    while counted("v2", "499") == before[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (counted("v2", "499"), counted("v2", "500")) == (before[0] + 1, before[1])
