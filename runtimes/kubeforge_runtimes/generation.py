"""Token-by-token generation for the OpenAI-compatible API: a causal LM's ``generate`` in a
thread, its tokens handed to the request's coroutine as they come (transformers' streamer
interface), stopped when the client goes away, with the token metrics vLLM exports.

The metric names and meanings are vLLM's (``vllm:time_to_first_token_seconds`` and the rest), so
that one set of canary gates reads the built-in runtime and a vLLM ServingRuntime alike; the
labels add the ModelServer's namespace, the predictor's revision and the adapter a request named
(``adapter``, empty for the base model) to vLLM's ``model_name``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import Counter, Gauge, Histogram

from kubeforge_crds.contracts.serving import ITL_METRIC, TTFT_METRIC
from kubeforge_runtimes.batching import Batcher, Job

LABELS = ["namespace", "model_name", "revision", "adapter"]
# vLLM's own buckets for the time to the first token and between tokens (seconds)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0)  # fmt: skip

TTFT = Histogram(
    TTFT_METRIC, "Time to the first generated token.", LABELS,
    buckets=TTFT_BUCKETS,
)  # fmt: skip
ITL = Histogram(
    ITL_METRIC, "Time between two generated tokens.", LABELS,
    buckets=ITL_BUCKETS,
)  # fmt: skip
E2E = Histogram(
    "vllm:e2e_request_latency_seconds", "Time from the request to its last token.", LABELS,
    buckets=E2E_BUCKETS,
)  # fmt: skip
PROMPT_TOKENS = Counter("vllm:prompt_tokens", "Prompt tokens processed.", LABELS)
GENERATION_TOKENS = Counter("vllm:generation_tokens", "Tokens generated.", LABELS)
RUNNING = Gauge("vllm:num_requests_running", "Requests generating now.", LABELS)


class TokenMetrics:
    """The token metrics of one predictor's requests to one adapter (``""``: the base model);
    series exist from the start, so that a rate over them counts a canary's first requests."""

    def __init__(self, namespace: str, model: str, revision: str, adapter: str = "") -> None:
        self.labels = (namespace, model, revision, adapter)
        for metric in (TTFT, ITL, E2E, PROMPT_TOKENS, GENERATION_TOKENS, RUNNING):
            metric.labels(*self.labels)
        self._adapters: dict[str, TokenMetrics] = {adapter: self}

    def of_adapter(self, adapter: str) -> TokenMetrics:
        """The same predictor's metrics of requests to ``adapter`` (a name it serves: the
        label's values are bounded by what is loaded, never by what clients send)."""
        if adapter not in self._adapters:
            ns, model, revision, _ = self.labels
            self._adapters[adapter] = TokenMetrics(ns, model, revision, adapter)
        return self._adapters[adapter]

    def started(self, prompt_tokens: int) -> None:
        PROMPT_TOKENS.labels(*self.labels).inc(prompt_tokens)
        RUNNING.labels(*self.labels).inc()

    def token(self, since_start: float, since_last: float | None) -> None:
        GENERATION_TOKENS.labels(*self.labels).inc()
        if since_last is None:
            TTFT.labels(*self.labels).observe(since_start)
        else:
            ITL.labels(*self.labels).observe(since_last)

    def finished(self, seconds: float) -> None:
        RUNNING.labels(*self.labels).dec()
        E2E.labels(*self.labels).observe(seconds)


@dataclass
class Sampling:
    """How to pick tokens: greedy when ``temperature`` is 0 (the same answer every time)."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None
    min_tokens: int = 0
    # adapters loaded by name on the base: the one the request names (batching.BASE_ADAPTER for
    # the base); None: the model as loaded
    adapter: str | None = None


@dataclass
class Generated:
    """What a generation produced so far; ``finish_reason`` once it ended."""

    prompt_tokens: int
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: Literal["stop", "length"] | None = None


def stop_at(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop sequence in ``text`` begins, if any (the answer ends before it)."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could be the start of a stop sequence: a
    stream keeps them until the next token says whether they are."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
                break
    return longest


def releasable(text: str, stops: Sequence[str] = ()) -> int:
    """How much of ``text`` (the answer so far) a stream may send: not what could be the start
    of a stop sequence, nor a last character whose bytes have not all come yet."""
    ready = len(text) - held_back(text, stops)
    if text.endswith("\ufffd"):
        ready = min(ready, len(text) - 1)
    return ready


class GenerationError(RuntimeError):
    """The model failed while generating (the request gets a 500 naming it)."""


class _TokenQueue:
    """transformers' streamer interface (``put`` / ``end``), called in the generating thread:
    the first ``put`` is the prompt, every later one the next token of the single sequence,
    handed to the request's event loop with the time it was made (``delay``: injected
    latency, waited here so that the model really is that much slower). ``end`` carries the
    error the generation failed with, if any."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float = 0.0) -> None:
        self.tokens: asyncio.Queue[tuple[int, float] | BaseException | None] = asyncio.Queue()
        self._loop, self._delay, self._prompt = loop, delay, True

    def _hand_over(self, item: tuple[int, float] | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self.tokens.put_nowait, item)

    def put(self, value: Any) -> None:
        if self._prompt:
            self._prompt = False
            return
        for token in value.reshape(-1).tolist():
            if self._delay:
                time.sleep(self._delay)
            self._hand_over((int(token), time.perf_counter()))

    def end(self, error: BaseException | None = None) -> None:
        self._hand_over(error)

    def emit(self, item: int | BaseException | None, made: float) -> None:
        """The batching thread's hand-over (``batching.Emit``): a token, then the end."""
        self._hand_over((item, made) if isinstance(item, int) else item)


def end_tokens(model: Any, tokenizer: Any) -> frozenset[int]:
    """The ids that end an answer: the generation config's (a list for many chat models, e.g.
    Llama 3's end-of-turn) and the tokenizer's end-of-text."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ends = set(ids if isinstance(ids, list) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        ends.add(tokenizer.eos_token_id)
    return frozenset(int(i) for i in ends)


def stream_tokens(
    model: Any,
    tokenizer: Any,
    lock: threading.Lock,
    prompt_ids: Any,
    sampling: Sampling,
    token_delay: float = 0.0,
    batcher: Batcher | None = None,
) -> AsyncGenerator[list[tuple[int, float]], None]:
    """The generated token ids, with when each was made, in batches of what has come since the
    last one (one token each when the reader keeps up). Closing the iterator (the client went
    away) stops the generation at the next token and frees the model; a request that leaves
    while waiting for the model never starts. A failure of the model is a GenerationError.

    The request goes to the model now, not when the iterator is first read: its prefill runs
    while the response starts (status line, headers: about 1 ms of the event loop's, as long
    as a small model's prefill). An iterator dropped unread (the client left before its
    response started) cancels the request when it is collected, as closing it would.

    With a ``batcher`` (a model it supports) the request decodes in its batch beside the other
    requests; otherwise ``generate`` runs in a thread of its own, one request at a time."""
    cancelled, first_sent = threading.Event(), threading.Event()
    streamer = _TokenQueue(asyncio.get_running_loop(), token_delay)
    if batcher is not None:
        batcher.submit(
            Job(
                prompt_ids, sampling.max_tokens, streamer.emit, cancelled,
                min_tokens=sampling.min_tokens, temperature=sampling.temperature,
                top_p=sampling.top_p, seed=sampling.seed, token_delay=token_delay,
                adapter=sampling.adapter, first_sent=first_sent,
            )
        )  # fmt: skip
    else:
        _generate_in_thread(model, tokenizer, lock, prompt_ids, sampling, streamer, cancelled)
    tokens = _received(streamer, cancelled, first_sent)
    weakref.finalize(tokens, _let_go, cancelled, first_sent)
    return tokens


def _let_go(cancelled: threading.Event, first_sent: threading.Event) -> None:
    """The request's end for its decoding thread: it stops at the next token, and a batch
    waiting for its first token to go out (``batching.first_tokens_out``) waits no more."""
    cancelled.set()
    first_sent.set()


async def _received(
    streamer: _TokenQueue, cancelled: threading.Event, first_sent: threading.Event
) -> AsyncGenerator[list[tuple[int, float]], None]:
    """``stream_tokens``' iterator: what the decoding thread hands over, batched."""
    try:
        done = False
        while not done:
            batch = [await streamer.tokens.get()]
            while not streamer.tokens.empty():
                batch.append(streamer.tokens.get_nowait())
            last = batch[-1]
            done = not isinstance(last, tuple)
            tokens = [t for t in batch if isinstance(t, tuple)]
            if tokens:
                yield tokens
                # back here when the reader asks for more: what it got has gone out
                first_sent.set()
            if isinstance(last, BaseException):
                raise GenerationError(f"the model failed while generating: {last}") from last
    finally:
        _let_go(cancelled, first_sent)


def _generate_in_thread(
    model: Any,
    tokenizer: Any,
    lock: threading.Lock,
    prompt_ids: Any,
    sampling: Sampling,
    streamer: _TokenQueue,
    cancelled: threading.Event,
) -> None:
    """transformers' ``generate`` for one request, in a thread, its tokens to ``streamer``."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

    options: dict[str, Any] = {"do_sample": sampling.temperature > 0}
    if sampling.temperature > 0:
        options |= {"temperature": sampling.temperature, "top_p": sampling.top_p}
    if sampling.adapter is not None:  # adapters loaded by name: the one asked for, or none
        options["adapter_names"] = [sampling.adapter]

    def run() -> None:
        error: BaseException | None = None
        try:
            with lock, torch.no_grad():
                if cancelled.is_set():
                    return
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                model.generate(
                    input_ids=prompt_ids,
                    attention_mask=torch.ones_like(prompt_ids),
                    max_new_tokens=sampling.max_tokens,
                    min_new_tokens=sampling.min_tokens,
                    pad_token_id=tokenizer.eos_token_id,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    **options,
                )
        except Exception as err:
            error = err
        finally:
            streamer.end(error)

    threading.Thread(target=run, name="generate", daemon=True).start()


def generate(
    model: Any,
    tokenizer: Any,
    lock: threading.Lock,
    prompt_ids: Any,
    sampling: Sampling,
    metrics: TokenMetrics,
    token_delay: float = 0.0,
    batcher: Batcher | None = None,
) -> AsyncGenerator[tuple[str, Generated], None]:
    """(new text, state so far) per step: text is released only when it cannot be the start of
    a stop sequence or half of a multi-byte character; the last step has ``finish_reason``
    (``stop`` at an end token or a stop sequence, else ``length``; the tokens after a stop
    sequence are not counted). ``token_delay`` (injected faults) is added before each token.
    The request goes to the model now (``stream_tokens``); the times to its tokens count from
    here."""
    started = time.perf_counter()
    batches = stream_tokens(model, tokenizer, lock, prompt_ids, sampling, token_delay, batcher)
    return _steps(batches, tokenizer, end_tokens(model, tokenizer), sampling, metrics, started,
                  Generated(prompt_tokens=int(prompt_ids.shape[1])))  # fmt: skip


async def _steps(
    batches: AsyncGenerator[list[tuple[int, float]], None],
    tokenizer: Any,
    ends: frozenset[int],
    sampling: Sampling,
    metrics: TokenMetrics,
    started: float,
    state: Generated,
) -> AsyncGenerator[tuple[str, Generated], None]:
    """``generate``'s iterator."""
    last: float | None = None
    sent = 0
    metrics.started(state.prompt_tokens)
    try:
        async for batch in batches:
            for token, made in batch:
                metrics.token(made - started, None if last is None else made - last)
                last = made
                if token in ends:
                    state.finish_reason = "stop"
                    break
                state.token_ids.append(token)
                state.text = tokenizer.decode(state.token_ids, skip_special_tokens=True)
                cut = stop_at(state.text, sampling.stop)
                if cut is not None:
                    state.text, state.finish_reason = state.text[:cut], "stop"
                    break
            if state.finish_reason is not None:
                break
            ready = releasable(state.text, sampling.stop)
            if ready > sent:
                yield state.text[sent:ready], state
                sent = ready
        if state.finish_reason is None:
            state.finish_reason = "length"
        yield state.text[sent:], state
    finally:
        await batches.aclose()
        metrics.finished(time.perf_counter() - started)
