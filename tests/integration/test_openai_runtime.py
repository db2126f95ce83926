"""The built-in runtime's OpenAI-compatible API, driven by the real ``openai`` client: a runtime
process serving the project's tiny GPT-2 (``python -m kubeforge_runtimes serve``), completions
and chat completions with and without streaming, usage, errors in OpenAI's shape, a stream the
client abandons, and vLLM's token metrics on /metrics."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from kubeforge_labs import kit
from kubeforge_labs.canary import set_faults, start_runtime
from kubeforge_labs.kit import Proc

pytestmark = pytest.mark.no_cluster  # real processes only: run beside the cluster's tests

NAME, NS, REVISION = "chat-bot", "team-a", "r0penai"
PROMPT = "ticket: the vpn fails after the update. resolution:"


@pytest.fixture(scope="module")
def runtime(tiny_base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    work = tmp_path_factory.mktemp("openai-runtime")
    proc = start_runtime(
        work, tiny_base_model, name=NAME, namespace=NS, revision=REVISION, max_new_tokens=8
    )
    yield proc
    proc.stop()


@pytest.fixture
def client(runtime: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{runtime.url}/openai/v1", api_key="unused", max_retries=0)


def metric(runtime: Proc, name: str) -> float:
    """The value of ``name`` for this runtime's labels on its /metrics."""
    text = httpx.get(f"{runtime.url}/metrics").text
    labels = f'adapter="",model_name="{NAME}",namespace="{NS}",revision="{REVISION}"'
    pattern = rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$"
    found = re.search(pattern, text, re.M)
    assert found, f"{name} with {labels} not on /metrics"
    return float(found[1])


def test_the_docs_example_runs_as_written(
    runtime: Proc, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/llm-serving.md's OpenAI client example, with the runtime's address in place of the
    ModelServer's host."""
    doc = (Path(__file__).parents[2] / "docs" / "llm-serving.md").read_text()
    section = doc.split("## Calling it with the OpenAI client", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert f'model="{NAME}"' in code
    exec(compile(code.replace("http://chat-bot-team-a.example.com", runtime.url), "doc", "exec"))  # noqa: S102
    out = capsys.readouterr().out
    assert "CompletionUsage(completion_tokens=" in out  # the chat answer's usage
    assert "prompt_tokens=" in out.rsplit("CompletionUsage", 1)[1]  # the stream's last chunk


def test_a_runtime_told_to_listen_on_loopback_listens_there_alone(runtime: Proc) -> None:
    """kserve's server listens on every address and has no option for it; ``--http-host``
    (which the tests' runtimes get) puts it on 127.0.0.1 alone."""
    port = int(runtime.url.rsplit(":", 1)[1])
    assert kit.listening_addresses(port) == {"127.0.0.1"}


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [NAME]


def test_completion_with_usage_and_the_same_text_when_streamed(
    client: openai.OpenAI, runtime: Proc
) -> None:
    whole = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=6, temperature=0)
    [choice] = whole.choices
    assert choice.text.strip()
    assert choice.finish_reason in ("length", "stop")
    assert whole.usage is not None
    assert whole.usage.prompt_tokens > 5
    assert 1 <= whole.usage.completion_tokens <= 6
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    # tokens 50 ms apart, as a larger model makes them, so that each is sent as it comes even
    # on a busy machine: a reader that lags gets what came since its last read in one event (by
    # design), and on a loaded two-core CI run this tiny model's six tokens all came in one
    set_faults(runtime, token_latency=0.05)
    try:
        chunks = list(
            client.completions.create(
                model=NAME, prompt=PROMPT, max_tokens=6, temperature=0, stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
    finally:
        set_faults(runtime)
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == choice.text  # greedy: the same tokens, delivered piece by piece
    assert len([c for c in chunks if c.choices]) > 1
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_completion_plain_template_streamed_and_not(client: openai.OpenAI) -> None:
    """The tiny GPT-2 has no chat template: the plain transcript ending with the assistant's
    turn is used, the same with and without streaming."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": "You answer support tickets."},
        {"role": "user", "content": "the vpn fails after the update"},
    ]
    whole = client.chat.completions.create(
        model=NAME,
        messages=messages,
        max_tokens=5,
        temperature=0,  # type: ignore[arg-type]
    )
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content
    assert whole.usage is not None
    assert whole.usage.completion_tokens <= 5
    stream = client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=5, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stop_sequence_ends_the_answer_before_it(client: openai.OpenAI) -> None:
    free = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=8, temperature=0)
    text = free.choices[0].text
    stop = text.strip()[:2]  # something the greedy answer is certain to contain
    cut = client.completions.create(
        model=NAME, prompt=PROMPT, max_tokens=8, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"max_tokens": 0}, "max_tokens", "between 1 and 4096"),
        ({"max_tokens": 100000}, "max_tokens", "between 1 and 4096"),
        ({"prompt": "word " * 300}, "prompt", "maximum context length is 256 tokens"),
        ({"temperature": 7}, "temperature", "less than or equal to 2"),
    ],
)
def test_bad_requests_are_400_in_openai_shape(
    client: openai.OpenAI, kwargs: dict[str, object], param: str, words: str
) -> None:
    body = {"model": NAME, "prompt": PROMPT, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(**body)  # type: ignore[call-overload]
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert words in error["message"]
    assert error["type"] == "invalid_request_error"


def test_other_paths_methods_and_bodies_are_answered_in_openai_shape(
    runtime: Proc, client: openai.OpenAI
) -> None:
    """The API's own app (``openai_asgi``) answers what it does not serve as the FastAPI routes
    it replaced never did: in OpenAI's error shape, naming what it serves or takes; a body too
    large for any context here is refused before it is read whole; the server keeps serving."""
    api = f"{runtime.url}/openai/v1"
    cases = [
        (httpx.post(f"{api}/embeddings", json={}), 404, "serves /openai/v1/chat/completions"),
        (httpx.get(f"{api}/completions"), 405, "/openai/v1/completions takes POST, not GET"),
        (httpx.post(f"{api}/completions", content=b"{nope"), 400, "the request body is not JSON"),
        (
            httpx.post(f"{api}/completions", content=b" " * (9 << 20)),
            413,
            "larger than 8388608 bytes",
        ),
        (  # half of a surrogate pair, which JSON can escape and no tokenizer takes (was a 500)
            httpx.post(
                f"{api}/completions",
                content=b'{"model": "%s", "prompt": "a\\ud800"}' % NAME.encode(),
            ),
            400,
            "prompt: not valid Unicode: an unpaired surrogate",
        ),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
    assert [m.id for m in client.models.list()] == [NAME]
    answer = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=2, temperature=0)
    assert answer.choices[0].text


def test_each_request_has_one_access_line_written_by_the_runtime(
    runtime: Proc, client: openai.OpenAI
) -> None:
    """uvicorn's access line is written by the runtime's own app once the response has ended
    (uvicorn's own, written as a response starts, is off): one line a request, in uvicorn's
    format and logger, with the status the client got, for kserve's routes and the OpenAI API
    alike; a streamed answer's line comes after its last token, not with its first."""
    probe = f"probe={time.monotonic_ns()}"
    assert httpx.get(f"{runtime.url}/v2/models/{NAME}/ready?{probe}").status_code == 200
    assert httpx.get(f"{runtime.url}/openai/v1/nothing?{probe}").status_code == 404
    assert httpx.get(f"{runtime.url}/v1/models/other?{probe}").status_code == 404
    streamed = f"{runtime.url}/openai/v1/completions?{probe}"
    body = {"model": NAME, "prompt": PROMPT, "max_tokens": 8, "min_tokens": 8, "stream": True}

    def lines() -> list[str]:
        return [line for line in runtime.log.read_text().splitlines() if probe in line]

    kit.wait_for("three access lines", lambda: len(lines()) >= 3, timeout=10)
    set_faults(runtime, token_latency=0.1)  # an answer that takes most of a second
    try:
        with httpx.stream("POST", streamed, json=body) as response:
            assert response.status_code == 200
            chunks = response.iter_text()
            assert next(chunks)
            assert "completions" not in " ".join(lines())  # not at the response's start
            assert "[DONE]" in "".join(chunks)
    finally:
        set_faults(runtime)
    found = kit.wait_for("four access lines", lambda: len(lines()) >= 4 and lines(), timeout=10)
    expected = [
        f'"GET /v2/models/{NAME}/ready?{probe} HTTP/1.1" 200 OK',
        f'"GET /openai/v1/nothing?{probe} HTTP/1.1" 404 Not Found',
        f'"GET /v1/models/other?{probe} HTTP/1.1" 404 Not Found',
        f'"POST /openai/v1/completions?{probe} HTTP/1.1" 200 OK',
    ]
    assert [line.split(" - ", 1)[1] for line in found] == expected
    assert all("uvicorn.access" in line and "127.0.0.1:" in line for line in found)


def test_unknown_model_is_404_naming_the_served_one(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match=f"serves `{NAME}`"):
        client.completions.create(model="gpt-4", prompt=PROMPT, max_tokens=2)


def test_an_abandoned_stream_frees_the_model(runtime: Proc, client: openai.OpenAI) -> None:
    """The client reads one chunk of a long answer and goes away: the generation stops (no
    request left running) and the next request is answered at once."""
    before = metric(runtime, "vllm:generation_tokens_total")
    # 200 tokens that cannot end early (min_tokens) and take 2 s (10 ms each): gone after the
    # first, the client must have stopped the generation for fewer than 200 to be counted
    set_faults(runtime, token_latency=0.01)
    try:
        stream = client.completions.create(
            model=NAME, prompt=PROMPT, max_tokens=200, temperature=0, stream=True,
            extra_body={"min_tokens": 200},
        )  # fmt: skip
        next(iter(stream))
        stream.close()
    finally:
        set_faults(runtime)
    deadline = time.monotonic() + 10
    while metric(runtime, "vllm:num_requests_running") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(runtime, "vllm:num_requests_running") == 0
    assert metric(runtime, "vllm:generation_tokens_total") - before < 200
    answer = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=2, temperature=0)
    assert answer.usage is not None
    assert answer.usage.completion_tokens >= 1


def test_a_client_that_leaves_a_whole_answer_frees_the_model(runtime: Proc) -> None:
    """A non-streamed request whose client gives up (its own timeout) stops generating at the
    next token, and is counted as the client's leaving (499), not as an error of the server."""
    before = metric(runtime, "vllm:generation_tokens_total")
    body = {"model": NAME, "prompt": PROMPT, "max_tokens": 200, "min_tokens": 200, "temperature": 0}
    # 200 tokens of 10 ms each: the client leaves after half a second
    set_faults(runtime, token_latency=0.01)
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{runtime.url}/openai/v1/completions", json=body, timeout=0.5)
        deadline = time.monotonic() + 10
        while metric(runtime, "vllm:num_requests_running") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        set_faults(runtime)
    assert metric(runtime, "vllm:num_requests_running") == 0
    assert metric(runtime, "vllm:generation_tokens_total") - before < 200
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in httpx.get(f"{runtime.url}/metrics").text.splitlines()
        if line.startswith("kubeforge_inference_requests_total{")
        and 'code="499"' in line
        and 'protocol="openai"' in line
    ]
    assert counted, "no request counted with code 499"
    assert sum(counted) >= 1


def test_token_metrics_are_vllm_s(runtime: Proc, client: openai.OpenAI) -> None:
    before = metric(runtime, "vllm:generation_tokens_total")
    prompt_before = metric(runtime, "vllm:prompt_tokens_total")
    answer = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=4, temperature=0)
    assert answer.usage is not None
    generated = metric(runtime, "vllm:generation_tokens_total") - before
    # the counter counts every token the model produced (an end-of-text token too)
    assert generated >= answer.usage.completion_tokens
    assert metric(runtime, "vllm:prompt_tokens_total") - prompt_before == answer.usage.prompt_tokens
    assert metric(runtime, "vllm:time_to_first_token_seconds_count") >= 1
    assert metric(runtime, "vllm:inter_token_latency_seconds_count") >= 1
    assert metric(runtime, "vllm:e2e_request_latency_seconds_count") >= 1
    # the runtime's own request metrics count the OpenAI routes too (the canary analysis)
    text = httpx.get(f"{runtime.url}/metrics").text
    assert re.search(
        r'kubeforge_inference_requests_total\{[^}]*protocol="openai"[^}]*\} [1-9]', text
    )


def test_a_text_models_answer_is_explained_by_the_words_of_its_prompt(runtime: Proc) -> None:
    prompt = "ticket: the vpn drops after an update. resolution:"
    explain = f"{runtime.url}/v1/models/{NAME}:explain"
    answer = httpx.post(explain, json={"instances": [prompt]}, timeout=120)
    assert answer.status_code == 200, answer.text
    (explained,) = answer.json()["explanations"]
    predicted = httpx.post(
        f"{runtime.url}/v1/models/{NAME}:predict", json={"instances": [prompt]}, timeout=60
    ).json()["predictions"][0]
    assert explained["answer"] == predicted  # the model's own answer is what is explained
    tokens = [a["token"] for a in explained["attributions"]]
    assert "".join(tokens) == prompt  # one contribution per prompt token, in order
    values = [a["contribution"] for a in explained["attributions"]]
    assert all(math.isfinite(v) for v in values)
    assert any(v != 0 for v in values)
    assert explained["summary"].startswith("The words that shaped the answer most: ")
    too_long = httpx.post(explain, json={"instances": ["word " * 400]}, timeout=60)
    assert too_long.status_code == 400
    assert "at most 256 are explained" in too_long.text


def test_a_prompt_beyond_the_context_is_a_400_on_every_protocol(runtime: Proc) -> None:
    long = "word " * 400  # the tiny GPT-2 has 256 positions
    v1 = httpx.post(
        f"{runtime.url}/v1/models/{NAME}:predict", json={"instances": ["hi", long]}, timeout=30
    )
    assert v1.status_code == 400, v1.text
    assert "instances[1]: the prompt has" in v1.text
    assert "beyond the model's context of 256 tokens" in v1.text
    v2 = httpx.post(
        f"{runtime.url}/v2/models/{NAME}/infer",
        json={"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": [long]}]},
        timeout=30,
    )
    assert v2.status_code == 400, v2.text
    ok = httpx.post(f"{runtime.url}/v1/models/{NAME}:predict", json={"instances": ["hi"]})
    assert ok.status_code == 200  # and the server keeps serving
