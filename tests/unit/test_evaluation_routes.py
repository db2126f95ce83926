"""Where the evaluation Job finds a predictor's OpenAI-compatible API
(``kubeforge_runtimes.evaluate.openai_base``), answered by httpx's own MockTransport with the
shapes the servers answer: kubeforge's runtime and KServe's Hugging Face server under
``/openai/v1`` (KServe's v1 protocol owns ``/v1/models``), a plain ``vllm serve`` at ``/v1``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kubeforge_runtimes.evaluate import EvaluationError, openai_base

ROOT = "http://bot-canary-predictor.team-a.svc"
OPENAI_LIST = {"object": "list", "data": [{"id": "bot", "object": "model"}]}
KSERVE_V1_LIST = {"models": ["bot"]}


def client(routes: dict[str, tuple[int, Any]]) -> tuple[httpx.Client, list[str]]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        status, body = routes.get(request.url.path, (404, {"detail": "Not Found"}))
        return httpx.Response(status, json=body)

    return httpx.Client(transport=httpx.MockTransport(answer)), asked


def test_kserve_style_servers_are_found_under_openai_v1_first() -> None:
    http, asked = client(
        {"/openai/v1/models": (200, OPENAI_LIST), "/v1/models": (200, KSERVE_V1_LIST)}
    )
    assert openai_base(ROOT, "candidate", "bot", http) == f"{ROOT}/openai/v1"
    assert asked == ["/openai/v1/models"]


def test_a_plain_vllm_server_is_found_at_v1() -> None:
    http, asked = client({"/v1/models": (200, OPENAI_LIST)})
    assert openai_base(ROOT + "/", "candidate", "bot", http) == f"{ROOT}/v1"
    assert asked == ["/openai/v1/models", "/v1/models"]


def test_a_base_url_already_naming_a_route_is_used_as_given() -> None:
    http, asked = client({"/v1/models": (200, OPENAI_LIST)})
    assert openai_base(f"{ROOT}/v1", "stable", "bot", http) == f"{ROOT}/v1"
    assert asked == ["/v1/models"]


def test_kserves_v1_model_list_is_not_taken_for_openais() -> None:
    http, _ = client({"/v1/models": (200, KSERVE_V1_LIST)})
    with pytest.raises(EvaluationError) as err:
        openai_base(ROOT, "stable", "bot", http)
    assert str(err.value) == (
        f"the stable version at {ROOT} serves no OpenAI-compatible API (GET /openai/v1/models "
        "answered 404; GET /v1/models answered 200 without OpenAI's model list)"
    )


def test_a_model_the_server_does_not_list_is_named_with_those_it_does() -> None:
    http, _ = client({"/openai/v1/models": (200, OPENAI_LIST)})
    with pytest.raises(EvaluationError) as err:
        openai_base(ROOT, "candidate", "chat", http)
    assert str(err.value).startswith(
        f"the candidate version at {ROOT}/openai/v1 does not serve the model 'chat' (it serves "
        "bot): the evaluation asks for the ModelServer's name"
    )
    assert "--served-model-name" in str(err.value)  # what a vLLM ServingRuntime must set


def test_a_predictor_that_fails_is_not_taken_for_a_missing_route() -> None:
    """503 (a predictor starting, a proxy without its backend) is the version failing, not a
    route it lacks: said with the status, not as "serves no OpenAI-compatible API"."""
    http, asked = client({"/openai/v1/models": (503, {"detail": "not ready"})})
    with pytest.raises(EvaluationError) as err:
        openai_base(ROOT, "stable", "bot", http)
    assert str(err.value) == (
        f'the stable version answered GET {ROOT}/openai/v1/models with 503: {{"detail":"not '
        'ready"}'
    )
    assert asked == ["/openai/v1/models"]


def test_an_unreachable_predictor_is_named() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(EvaluationError, match=f"the candidate version at {ROOT} cannot be reached"):
        openai_base(ROOT, "candidate", "bot", http)
