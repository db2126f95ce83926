"""The status code the runtime counts and logs for a request its app answered without a response
(``server.InferenceMetrics`` under a real uvicorn, as ``server.serve_on`` serves it): 499 when
the client had gone away (the app was told so), and uvicorn's own 500 when the client was still
waiting, counted and logged as the 500 the client got, not as the client's leaving."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY

from kubeforge_runtimes.faults import FaultInjector
from kubeforge_runtimes.server import (
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
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here: no other process can take the port meanwhile
    # log_config=None: uvicorn leaves this process's logging as it is (its own config would
    # stop uvicorn.access propagating for every later test)
    config = uvicorn.Config(front, log_config=None, http=without_access_log())
    running = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(running.serve([sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    running.should_exit = True
    thread.join(10)
    assert not thread.is_alive(), "uvicorn did not stop"
    sock.close()


def counted(protocol: str, code: str) -> float:
    labels = {"namespace": "codes-ns", "model": NAME, "revision": "codes-r", "adapter": "",
              "protocol": protocol, "code": code}  # fmt: skip
    return REGISTRY.get_sample_value("kubeforge_inference_requests_total", labels) or 0.0


def test_no_answer_to_a_waiting_client_is_the_500_it_got(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = counted("v1", "500"), counted("v1", "499")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        answer = httpx.post(f"{server}/v1/models/{NAME}:predict", json={"instances": [1]})
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
