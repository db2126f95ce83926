"""The OpenAI-compatible API of the built-in runtime for causal LMs, under ``/openai/v1/`` as
KServe's Hugging Face runtime serves it: ``completions``, ``chat/completions`` (the model's chat
template, or a plain one for models without), ``models``; streaming as server-sent events;
``usage``; errors in OpenAI's error shape.

Written here rather than taken from KServe: KServe's own OpenAI layer
(``kserve.protocol.rest.openai``, v0.21) imports its request and response types from vLLM, which
needs a GPU build of its own and cannot be installed beside this CPU torch. The response bodies
are the ``openai`` package's own models, so what the client parses is what the server wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types import Model as ModelCard
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice as ChatChoice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta

from kubeforge_runtimes.batching import BASE_ADAPTER
from kubeforge_runtimes.faults import FaultInjector
from kubeforge_runtimes.generation import (
    Generated,
    GenerationError,
    Sampling,
    TokenMetrics,
    generate,
)
from kubeforge_runtimes.openai_requests import (
    ChatRequest,
    CompletionRequest,
    OpenAIError,
    OpenAIRequest,
    chat_ids,
    parse,
    sampling,
)
from kubeforge_runtimes.prompts import prompt_ids

PREFIX = "/openai/v1"


def usage(state: Generated) -> CompletionUsage:
    n = len(state.token_ids)
    return CompletionUsage(
        prompt_tokens=state.prompt_tokens, completion_tokens=n, total_tokens=state.prompt_tokens + n
    )


class OpenAIServer:
    """The three routes for one loaded causal LM (``models.CausalLM``)."""

    def __init__(self, lm: Any, metrics: TokenMetrics, injector: FaultInjector) -> None:
        self.lm, self.metrics, self.injector = lm, metrics, injector
        for adapter in getattr(lm, "adapters", {}):  # each adapter's series from the start
            metrics.of_adapter(adapter)
        self.created = int(time.time())
        self.context = int(lm.context)

    @property
    def served(self) -> list[str]:
        """The names a request may give as ``model``: the model's, then its adapters'."""
        return [self.lm.name, *sorted(getattr(self.lm, "adapters", {}))]

    def models(self) -> dict[str, Any]:
        cards = [
            ModelCard(id=name, created=self.created, object="model", owned_by="kubeforge")
            for name in self.served
        ]
        return {"object": "list", "data": [c.model_dump() for c in cards]}

    def _adapter(self, name: str) -> str | None:
        """The adapter ``name`` asks for (BASE_ADAPTER: the base, when adapters are loaded by
        name; None: the model as loaded); 404 naming what is served otherwise."""
        if name not in self.served:
            names = ", ".join(f"`{n}`" for n in self.served)
            raise OpenAIError(
                404,
                f"The model `{name}` does not exist; this server serves {names}.",
                param="model",
                code="model_not_found",
            )
        if not getattr(self.lm, "adapters", None):
            return None
        return BASE_ADAPTER if name == self.lm.name else name

    def _prepare(
        self, request: OpenAIRequest, ids: Any, adapter: str | None
    ) -> tuple[Any, Sampling]:
        """The request's sampling for its prompt ``ids`` and the ``adapter`` it named."""
        if ids.shape[1] == 0:
            raise OpenAIError(400, "the prompt is empty", param="prompt")
        params = sampling(request, int(ids.shape[1]), self.context, self.lm.max_new_tokens)
        return ids, dataclasses.replace(params, adapter=adapter)

    def adapter_label(self, model: Any) -> str:
        """The ``adapter`` label of a request naming ``model``: the name of a loaded adapter,
        else empty (the base model; a name answered with 404 is never a label value)."""
        return model if isinstance(model, str) and model in getattr(self.lm, "adapters", {}) else ""

    def _generate(self, ids: Any, params: Sampling) -> AsyncGenerator[tuple[str, Generated], None]:
        lock: threading.Lock = self.lm._lock
        named = params.adapter if params.adapter not in (None, BASE_ADAPTER) else None
        faults = self.injector.faults
        delay = faults.token_latency_seconds if faults.applies_to(named or self.lm.name) else 0.0
        metrics = self.metrics.of_adapter(named or "")
        batcher = getattr(self.lm, "batcher", None)
        return generate(
            self.lm.model, self.lm.tokenizer, lock, ids, params, metrics, delay, batcher
        )

    async def completion(self, body: Any) -> Completion | AsyncIterator[str]:
        request = parse(CompletionRequest, body)
        adapter = self._adapter(request.model)  # an unknown model: 404 before any work
        special = True if request.add_special_tokens is None else request.add_special_tokens
        ids = prompt_ids(self.lm.tokenizer, request.prompt, special)
        ids, params = self._prepare(request, ids, adapter)
        rid = f"cmpl-{uuid.uuid4().hex}"
        if request.stream:
            return self._stream_completion(rid, request, ids, params)
        state = await _last(self._generate(ids, params))
        choice = CompletionChoice(
            index=0, text=state.text, finish_reason=state.finish_reason or "stop", logprobs=None
        )
        return Completion(
            id=rid, object="text_completion", created=int(time.time()), model=request.model,
            choices=[choice], usage=usage(state),
        )  # fmt: skip

    def _stream_completion(
        self, rid: str, request: CompletionRequest, ids: Any, params: Sampling
    ) -> AsyncIterator[str]:
        created = int(time.time())

        def chunk(choices: list[CompletionChoice], **extra: Any) -> str:
            body = Completion(
                id=rid, object="text_completion", created=created, model=request.model,
                choices=choices, **extra,
            )  # fmt: skip
            return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

        def piece(text: str, state: Generated) -> str:
            # a chunk's finish_reason is null until the last one (the openai package's model
            # types it for whole answers, so chunks are built without its validation)
            fields: dict[str, Any] = {"text": text, "finish_reason": state.finish_reason}
            return chunk([CompletionChoice.model_construct(index=0, logprobs=None, **fields)])

        def tail(state: Generated) -> str:
            return chunk([], usage=usage(state))

        wants_usage = (request.stream_options or {}).get("include_usage")
        return _events(self._generate(ids, params), templated(piece), tail if wants_usage else None)

    async def chat(self, body: Any) -> ChatCompletion | AsyncIterator[str]:
        request = parse(ChatRequest, body)
        adapter = self._adapter(request.model)  # an unknown model: 404 before any work
        ids = chat_ids(self.lm.tokenizer, request.messages, request.add_special_tokens)
        ids, params = self._prepare(request, ids, adapter)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if request.stream:  # (the request goes to the model now, before the first event)
            return self._stream_chat(rid, request, self._generate(ids, params))
        state = await _last(self._generate(ids, params))
        message = ChatCompletionMessage(role="assistant", content=state.text)
        choice = ChatChoice(index=0, message=message, finish_reason=state.finish_reason or "stop")
        return ChatCompletion(
            id=rid, object="chat.completion", created=int(time.time()), model=request.model,
            choices=[choice], usage=usage(state),
        )  # fmt: skip

    async def _stream_chat(
        self, rid: str, request: ChatRequest, steps: AsyncGenerator[tuple[str, Generated], None]
    ) -> AsyncIterator[str]:
        created = int(time.time())

        def chunk(choices: list[ChunkChoice], **extra: Any) -> str:
            body = ChatCompletionChunk(
                id=rid, object="chat.completion.chunk", created=created, model=request.model,
                choices=choices, **extra,
            )  # fmt: skip
            return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

        def piece(text: str, state: Generated) -> str:
            delta = ChoiceDelta(content=text)
            return chunk([ChunkChoice(index=0, delta=delta, finish_reason=state.finish_reason)])

        def tail(state: Generated) -> str:
            return chunk([], usage=usage(state))

        yield chunk([ChunkChoice(index=0, delta=ChoiceDelta(role="assistant", content=""))])
        wants_usage = (request.stream_options or {}).get("include_usage")
        events = _events(steps, templated(piece), tail if wants_usage else None)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event


_PLACEHOLDER = "kubeforge-text-placeholder"


def templated(piece: Callable[[str, Generated], str]) -> Callable[[str, Generated], str]:
    """``piece`` (a stream's event for new text) rendered once, with a placeholder for the text,
    and split around it: each event until the last (which carries ``finish_reason``) is then
    the two halves joined around the new text in JSON. Building and dumping the openai types'
    pydantic model every token took a fifth of the event loop's time a token (py-spy on
    ``bench/generation.py``); what the client reads is the same JSON."""
    rendered = piece(_PLACEHOLDER, Generated(prompt_tokens=0))
    head, found, tail = rendered.partition(json.dumps(_PLACEHOLDER))
    if not found:  # not a text event: nothing to fill in
        return piece

    def event(text: str, state: Generated) -> str:
        if state.finish_reason is not None:
            return piece(text, state)
        return head + json.dumps(text, ensure_ascii=False) + tail

    return event


async def _events(
    steps: AsyncGenerator[tuple[str, Generated], None],
    piece: Callable[[str, Generated], str],
    tail: Callable[[Generated], str] | None,
) -> AsyncGenerator[str, None]:
    """The server-sent events of a stream: one per step, ``tail`` (the usage) after the last,
    then ``[DONE]``. The model failing midway is an error event in OpenAI's shape (the status
    line went out with the first event), which the openai client raises as an APIError."""
    state = None
    try:
        async with contextlib.aclosing(steps):
            async for text, state in steps:
                yield piece(text, state)
    except GenerationError as err:
        yield f"data: {json.dumps(OpenAIError(500, str(err)).body())}\n\n"
        return
    if state is not None and tail is not None:
        yield tail(state)
    yield "data: [DONE]\n\n"


async def _last(steps: AsyncGenerator[tuple[str, Generated], None]) -> Generated:
    last = None
    async with contextlib.aclosing(steps):
        async for _, state in steps:
            last = state
    assert last is not None  # generate() always yields a last step
    return last
