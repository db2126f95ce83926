"""The OpenAI-compatible API's pure parts: requests checked field by field, the token budget
against the context, the plain chat transcript, stop sequences in a stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from kubeforge_runtimes.generation import Generated, held_back, releasable, stop_at
from kubeforge_runtimes.openai_api import templated
from kubeforge_runtimes.openai_requests import (
    ChatRequest,
    CompletionRequest,
    Message,
    OpenAIError,
    chat_ids,
    parse,
    sampling,
)


class _NoTemplate:
    """A tokenizer without a chat template that keeps the texts it was asked to encode."""

    chat_template = None

    def __init__(self) -> None:
        self.texts: list[tuple[str, bool]] = []

    def __call__(self, text: str, add_special_tokens: bool, return_tensors: str) -> Any:
        self.texts.append((text, add_special_tokens))
        return {"input_ids": torch.tensor([[len(text)]])}


def test_fields_are_named_in_errors() -> None:
    with pytest.raises(OpenAIError) as caught:
        parse(CompletionRequest, {"model": "m"})
    assert caught.value.status == 400
    assert caught.value.param == "prompt"
    with pytest.raises(OpenAIError, match="messages"):
        parse(ChatRequest, {"model": "m", "messages": []})
    with pytest.raises(OpenAIError) as caught:
        parse(ChatRequest, {"model": "m", "messages": [{"role": "wizard", "content": "hi"}]})
    assert caught.value.param == "messages.0.role"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be between 1 and 4096, got 0"),
        ({"max_tokens": -3}, "max_tokens must be between 1 and 4096, got -3"),
        ({"max_tokens": 5000}, "between 1 and 4096"),
        ({"max_tokens": 200}, "maximum context length is 256 tokens. However, you requested 300"),
        ({"n": 2}, "only one choice"),
    ],
)
def test_token_budget_is_checked_against_the_context(body: dict[str, Any], message: str) -> None:
    request = parse(CompletionRequest, {"model": "m", "prompt": "p", **body})
    with pytest.raises(OpenAIError, match=message) as caught:
        sampling(request, prompt_tokens=100, context=256, default=32)
    assert caught.value.status == 400


def test_without_max_tokens_a_chat_gets_what_fits() -> None:
    chat = parse(ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert sampling(chat, prompt_tokens=250, context=256, default=32).max_tokens == 6
    assert sampling(chat, prompt_tokens=10, context=256, default=32).max_tokens == 32
    newer = parse(
        ChatRequest,
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7},
    )
    assert sampling(newer, prompt_tokens=10, context=256, default=32).max_tokens == 7
    with pytest.raises(OpenAIError, match="maximum context length") as caught:
        sampling(chat, prompt_tokens=256, context=256, default=32)
    assert caught.value.param == "messages"
    assert caught.value.code == "context_length_exceeded"
    # a prompt beyond the context, no budget asked: the numbers say so, none negative
    with pytest.raises(OpenAIError) as caught:
        sampling(chat, prompt_tokens=263, context=256, default=32)
    assert "you requested 264 tokens (263 in the prompt, 1 in the completion)" in str(
        caught.value.message
    )


def test_max_completion_tokens_of_zero_is_refused_by_its_name() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    zero = parse(ChatRequest, {**body, "max_completion_tokens": 0, "max_tokens": 5})
    with pytest.raises(OpenAIError, match="max_completion_tokens must be between 1") as caught:
        sampling(zero, prompt_tokens=10, context=256, default=32)
    assert caught.value.param == "max_completion_tokens"
    older = parse(ChatRequest, {**body, "max_tokens": 0})
    with pytest.raises(OpenAIError, match="max_tokens must be between 1"):
        sampling(older, prompt_tokens=10, context=256, default=32)


def test_stop_is_a_list_whatever_the_request_sent() -> None:
    one = parse(CompletionRequest, {"model": "m", "prompt": "p", "stop": "\n"})
    assert list(sampling(one, 1, 256, 8).stop) == ["\n"]
    several = parse(CompletionRequest, {"model": "m", "prompt": "p", "stop": ["a", "b"]})
    assert list(sampling(several, 1, 256, 8).stop) == ["a", "b"]


def test_plain_transcript_for_a_model_without_a_chat_template() -> None:
    messages = [
        Message(role="system", content="Be brief."),
        Message(
            role="user",
            content=[{"type": "text", "text": "vpn "}, {"type": "text", "text": "down"}],
        ),
    ]
    tokenizer = _NoTemplate()
    chat_ids(tokenizer, messages)
    chat_ids(tokenizer, messages, special=False)
    text = "system: Be brief.\nuser: vpn down\nassistant:"
    assert tokenizer.texts == [(text, True), (text, False)]  # as a completion's prompt


def test_a_non_text_part_is_refused_naming_it() -> None:
    image = Message(role="user", content=[{"type": "image_url", "image_url": {"url": "x"}}])
    with pytest.raises(OpenAIError, match=r"messages\[0\].content\[0\]: only text parts"):
        chat_ids(_NoTemplate(), [image])


def test_stop_sequences() -> None:
    assert stop_at("hello world", ["wor", "lo"]) == 3
    assert stop_at("hello", ["x"]) is None
    assert stop_at("hello", [""]) is None
    # a stream keeps back what could still become a stop sequence
    assert held_back("the end", ["END", "nd."]) == 2
    assert held_back("the en", ["end"]) == 2
    assert held_back("the", ["xyz"]) == 0


def test_a_stream_sends_neither_a_half_character_nor_a_possible_stop() -> None:
    assert releasable("hello") == 5
    # the last character's bytes have not all come (a byte-level token of a longer character)
    assert releasable("caf\ufffd") == 3
    assert releasable("\ufffd") == 0
    assert releasable("the en", ["end"]) == 4
    assert releasable("the en\ufffd", ["end"]) == 6


def test_min_tokens_beyond_the_budget_is_refused() -> None:
    request = parse(
        CompletionRequest, {"model": "m", "prompt": "p", "max_tokens": 4, "min_tokens": 9}
    )
    with pytest.raises(OpenAIError, match=r"min_tokens \(9\) is more than the 4 tokens") as caught:
        sampling(request, prompt_tokens=3, context=256, default=8)
    assert caught.value.param == "min_tokens"
    fine = parse(CompletionRequest, {"model": "m", "prompt": "p", "max_tokens": 4, "min_tokens": 4})
    assert sampling(fine, prompt_tokens=3, context=256, default=8).min_tokens == 4


def test_a_seed_torch_cannot_take_is_a_400() -> None:
    with pytest.raises(OpenAIError) as caught:
        parse(CompletionRequest, {"model": "m", "prompt": "p", "seed": 1 << 70})
    assert caught.value.param == "seed"


class _Tokenizer:
    eos_token_id = 0


class _FailingModel:
    generation_config = None

    def generate(self, **kwargs: Any) -> None:
        raise ValueError("out of memory (as the device says)")


class _ChatModel:
    def __init__(self) -> None:
        # shaped as transformers' GenerationConfig: Llama 3 style, two end tokens
        self.generation_config = type("GenerationConfig", (), {"eos_token_id": [7, 9]})()


def test_a_model_failing_midway_is_a_generation_error_and_frees_the_lock() -> None:
    import asyncio
    import threading

    import torch

    from kubeforge_runtimes.generation import GenerationError, Sampling, stream_tokens

    lock = threading.Lock()

    async def drain() -> None:
        ids = torch.tensor([[1, 2, 3]])
        async for _ in stream_tokens(_FailingModel(), _Tokenizer(), lock, ids, Sampling(4)):
            pass

    with pytest.raises(GenerationError, match="out of memory"):
        asyncio.run(drain())
    assert lock.acquire(timeout=5)  # the next request gets the model


def test_every_end_token_of_the_generation_config_ends_an_answer() -> None:
    from kubeforge_runtimes.generation import end_tokens

    assert end_tokens(_ChatModel(), _Tokenizer()) == {0, 7, 9}
    assert end_tokens(_FailingModel(), _Tokenizer()) == {0}


@pytest.mark.parametrize(
    "text", ["plain", 'a "quoted" \\ back\\slash', "line\nbreak\ttab", "héllo ✓ 🚀", "\x01\x7f", ""]
)
def test_a_templated_event_is_the_json_the_model_would_have_written(text: str) -> None:
    from openai.types import Completion, CompletionChoice
    from openai.types.chat import ChatCompletionChunk
    from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

    def completion(text: str, state: Generated) -> str:
        choice = CompletionChoice.model_construct(
            index=0, logprobs=None, text=text, finish_reason=state.finish_reason
        )
        body = Completion(
            id="cmpl-1", object="text_completion", created=1, model="m", choices=[choice]
        )
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    def chat(text: str, state: Generated) -> str:
        choice = Choice(index=0, delta=ChoiceDelta(content=text), finish_reason=state.finish_reason)
        body = ChatCompletionChunk(
            id="c-1", object="chat.completion.chunk", created=1, model="m", choices=[choice]
        )
        return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

    for piece in (completion, chat):
        fast = templated(piece)
        assert fast is not piece  # a text event: templated, not passed through
        going, ended = Generated(prompt_tokens=3), Generated(prompt_tokens=3, finish_reason="stop")
        event = fast(text, going)
        assert event.startswith("data: {")
        assert event.endswith("}\n\n")
        assert json.loads(event[6:]) == json.loads(piece(text, going)[6:])
        assert fast(text, ended) == piece(text, ended)  # the last event: the model's own


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "vpn \ud800 down"}, "prompt"),
        ({"prompt": "p", "stop": ["ok", "\udc00"]}, "stop"),
        ({"prompt": "p", "stop": "\udc00"}, "stop"),
    ],
)
def test_half_a_surrogate_pair_is_refused_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    """JSON's escapes can carry half of a surrogate pair, which no tokenizer takes (a 500 before
    this check); a whole pair (an emoji written as two escapes) is text like any other."""
    with pytest.raises(OpenAIError) as caught:
        parse(CompletionRequest, {"model": "m", **body})
    assert caught.value.status == 400
    assert caught.value.param == param
    assert "not valid Unicode: an unpaired surrogate" in caught.value.message
    assert not caught.value.message.startswith(f"{param}: Value error")
    emoji = json.loads('"ok \\ud83d\\ude80"')
    assert parse(CompletionRequest, {"model": "m", "prompt": emoji}).prompt == "ok 🚀"


def test_half_a_surrogate_pair_in_a_message_is_refused_naming_it() -> None:
    bad = json.loads('[{"role": "user", "content": "a\\ud800"}]')
    with pytest.raises(OpenAIError) as caught:
        parse(ChatRequest, {"model": "m", "messages": bad})
    assert caught.value.param == "messages.0.content"
    assert caught.value.message.startswith("messages.0.content: not valid Unicode")
    part = Message(role="user", content=[{"type": "text", "text": "b\udfff"}])
    with pytest.raises(OpenAIError, match=r"messages\[0\].content\[0\].text: not valid Unicode"):
        chat_ids(_NoTemplate(), [part])
