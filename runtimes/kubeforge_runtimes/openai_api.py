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
from typing import Any, Literal

from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types import Model as ModelCard
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice as ChatChoice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeforge_runtimes.batching import BASE_ADAPTER
from kubeforge_runtimes.faults import FaultInjector
from kubeforge_runtimes.generation import (
    Generated,
    GenerationError,
    Sampling,
    TokenMetrics,
    generate,
)
from kubeforge_runtimes.prompts import prompt_ids

PREFIX = "/openai/v1"
MAX_TOKENS_LIMIT = 4096  # far beyond any context here: a larger value is a mistake


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.allow = ""  # a 405's Allow header

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return {"error": error}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = None
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = Field(default=None, ge=0, lt=1 << 63)  # what torch can seed with
    # vLLM's extension: at least this many tokens before the end-of-text token may end it
    min_tokens: int = Field(default=0, ge=0)
    # vLLM's extension: the tokenizer's special tokens (a BOS) added to the prompt; by default
    # yes for a completion and a plain transcript, no after a chat template (which writes them)
    add_special_tokens: bool | None = None


class CompletionRequest(_Request):
    prompt: str
    max_tokens: int | None = 16  # OpenAI's default for completions


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]]


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None


def parse(model: type[BaseModel], body: Any) -> Any:
    """The request, or a 400 naming the first field that is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise OpenAIError(400, f"{param}: {first['msg']}", param=param) from None


def message_text(message: Message, index: int) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for i, part in enumerate(message.content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise OpenAIError(
                400,
                f"messages[{index}].content[{i}]: only text parts are supported by this model",
                param=f"messages.{index}.content",
            )
        parts.append(part["text"])
    return "".join(parts)


def chat_prompt(tokenizer: Any, messages: list[Message]) -> str:
    """The model's chat template applied to ``messages``; for a model without one (a base model
    or a fine-tuned completion model) a plain transcript that ends with the assistant's turn."""
    turns = [{"role": m.role, "content": message_text(m, i)} for i, m in enumerate(messages)]
    if getattr(tokenizer, "chat_template", None):
        try:
            return str(
                tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
            )
        except Exception as err:
            # a template that refuses the conversation (roles that do not alternate, a system
            # role it does not take) refuses the request, not the server
            raise OpenAIError(
                400, f"messages: the model's chat template refused them: {err}", "messages"
            ) from None
    return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"


def sampling(request: _Request, prompt_tokens: int, context: int, default: int) -> Sampling:
    """The request's sampling, with its token budget checked against the model's context."""
    newer = getattr(request, "max_completion_tokens", None)  # a chat's, before max_tokens
    asked, param = (
        (newer, "max_completion_tokens")
        if newer is not None
        else (request.max_tokens, "max_tokens")
    )
    if request.n != 1:
        raise OpenAIError(400, "n: only one choice per request is supported", param="n")
    if asked is not None and not 1 <= asked <= MAX_TOKENS_LIMIT:
        raise OpenAIError(
            400, f"{param} must be between 1 and {MAX_TOKENS_LIMIT}, got {asked}", param=param
        )
    room = context - prompt_tokens
    # without a budget a chat gets what fits, and at least one token is always asked for
    wanted = asked if asked is not None else max(1, min(default, room))
    if wanted > room:
        raise OpenAIError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the prompt, {wanted} in the "
            "completion). Please reduce the prompt or the completion length.",
            param="messages" if isinstance(request, ChatRequest) else "prompt",
            code="context_length_exceeded",
        )
    if request.min_tokens > wanted:
        raise OpenAIError(
            400,
            f"min_tokens ({request.min_tokens}) is more than the {wanted} tokens asked for",
            param="min_tokens",
        )
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    return Sampling(
        wanted, request.temperature, request.top_p, stop, request.seed, request.min_tokens
    )


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

    def _check_model(self, name: str) -> None:
        self._adapter(name)

    def _prepare(
        self, request: _Request, prompt: str, special: bool = True
    ) -> tuple[Any, Sampling]:
        adapter = self._adapter(request.model)
        if request.add_special_tokens is not None:
            special = request.add_special_tokens
        ids = prompt_ids(self.lm.tokenizer, prompt, special)
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
        ids, params = self._prepare(request, request.prompt)
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
        self._check_model(request.model)
        prompt = chat_prompt(self.lm.tokenizer, request.messages)
        # a chat template writes the model's special tokens itself (Llama's and Mistral's begin
        # with the BOS): none added again, as transformers' apply_chat_template and vLLM do
        special = not getattr(self.lm.tokenizer, "chat_template", None)
        ids, params = self._prepare(request, prompt, special)
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
