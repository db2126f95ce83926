"""Continuous batching for the OpenAI-compatible API: one decoding thread per model runs every
request that is generating as one batch, one forward pass per token for all of them, and lets
new requests join between two tokens (prefilled as a group, their key/value cache joined to the
batch's) and finished ones leave.

Why written here: transformers' ``generate`` takes a fixed batch and returns when all of it is
done, so a request arriving meanwhile would wait for the slowest answer, and its streamer takes
one sequence only; vLLM and TGI do this (paged attention, CUDA kernels) but need a GPU build of
their own. On the small models a CPU serves, ``generate``'s own bookkeeping per token (logits
processors, stopping criteria, a cache object per call) also costs as much as the model's
forward pass; this loop does only what a request asks for.

What it serves: causal LMs whose cache is transformers' ``DynamicCache`` of plain layers (GPT-2,
Llama, Qwen, Mistral without sliding windows), with or without a LoRA/DoRA adapter. Prompt
tuning prepends virtual tokens inside the forward pass and cannot be batched this way:
:func:`supports` says so, and those models keep ``generate`` (``generation.stream_tokens``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeforge_runtimes.threads import token_cost, torch_threads

log = logging.getLogger(__name__)

# what the thread hands each request: a token id with the time it was chosen, then None when the
# request's generation ended (its length, an end token or its cancellation), or the error the
# model failed with
Emit = Callable[[int | BaseException | None, float], None]
# peft's name for "no adapter" in a batch whose rows each name theirs
BASE_ADAPTER = "__base__"
# the longest the batch waits after a prefill for the new requests' first tokens to go out:
# the next step's matrix products would otherwise take both cores of a small machine from the
# event loop writing them (and from the client reading them), adding most of a step to the
# time to first token (bench/generation.py); a step is tens of milliseconds on a CPU
FIRST_TOKEN_WAIT = 0.05
# the least work (padded prompt tokens x ``token_cost``: multiply-adds) for which a prefill
# takes every CPU (``Batcher.prefill_threads``): a second thread makes a prefill ~27 % faster
# at every size, but once its products end it spins a millisecond or so waiting for more
# (OpenMP's wait policy), on the core that writes the first token. About 6 ms of one core of
# the 2-core machine; below it the spin cost more than the prefill gained (the tiny GPT-2:
# time to first token 3.1 -> 4.5 ms, bench/generation.py; docs/benchmarks.md)
PARALLEL_PREFILL = 2e8


@dataclass
class Job:
    """One request's generation: its prompt's token ids (a 1 x n tensor) and what it asked for."""

    prompt_ids: Any
    max_tokens: int
    emit: Emit
    cancelled: threading.Event
    min_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    token_delay: float = 0.0
    adapter: str | None = None  # the adapter this request names (BASE_ADAPTER: none)
    # set by the request's side once its first token has gone out (the batch waits for it
    # after a prefill, up to FIRST_TOKEN_WAIT); None: nobody to wait for
    first_sent: threading.Event | None = None
    generated: int = 0
    generator: Any = field(default=None, repr=False)

    def done(self, token: int, ends: frozenset[int]) -> bool:
        return self.generated >= self.max_tokens or token in ends


def supports(model: Any) -> bool:
    """Whether this loop can decode ``model``: not a prompt-tuned adapter (virtual tokens are
    prepended in the forward pass, which a cached decoding step must not repeat), and a cache
    of plain dynamic layers (a sliding-window or recurrent cache cannot be joined by padding)."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return False
    try:
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            one = torch.zeros((1, 1), dtype=torch.long)
            model(input_ids=one, attention_mask=torch.ones_like(one), past_key_values=cache)
    except Exception:  # a model whose forward wants more than ids: keep generate()
        log.exception("Batched decoding probe failed; generating one request at a time")
        return False
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def takes_logits_to_keep(model: Any) -> bool:
    """Whether ``model``'s forward pass can compute the last position's logits alone
    (transformers' ``logits_to_keep``, which ``generate`` sets to 1). A prefill then skips the
    language-model head's product for every other position of the prompts: prompt length x
    width x vocabulary, the largest single product of a model with a large vocabulary. A peft
    model passes the argument on to its base model, whose forward is the one asked."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward = getattr(base, "forward", None)
    try:
        return forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # no signature to read: ask for every position, as before
        return False


def skip_padding_check(model: Any) -> None:
    """Turn off transformers' padding check on ``model``'s modules. Every forward pass given ids
    probes for graph capture on each accelerator torch knows of (a CUDA build of torch on a
    machine without the driver raises and catches an error in that probe each time: 9 us) and,
    when no attention mask is given, looks for padding in the ids (6 us more), to warn once:
    up to 6 % of the decoding thread's time on the tiny model (py-spy; docs/benchmarks.md).
    This loop passes a mask whenever a row is padded, so the check has nothing to say to it
    (``generate`` always passes one). An attribute on each module shadows the method: no other
    model is touched."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.warn_if_padding_and_no_attention_mask = _no_check  # type: ignore[method-assign]


def _no_check(input_ids: Any, attention_mask: Any) -> None:
    """``skip_padding_check``'s stand-in for transformers' check: the batcher pads with a mask."""


class Batcher:
    """The decoding thread of one model (started on the first request). ``lock`` is the model's:
    each forward pass holds it, so other users of the model (the v1/v2 predict path) interleave
    between two tokens. ``prefill_threads``: torch's threads for a prefill
    (``threads.prefill_threads``: every CPU of the budget; a decoding step keeps the
    process's, one less); None: the process's for every pass."""

    def __init__(
        self,
        model: Any,
        lock: threading.Lock,
        ends: frozenset[int],
        pad_id: int,
        max_batch: int = 16,
        prefill_threads: int | None = None,
    ) -> None:
        self.model, self.lock, self.ends, self.pad_id = model, lock, ends, pad_id
        self.prefill_threads = prefill_threads
        # multiply-adds a prompt token costs, to tell a prefill worth more threads (counted only
        # when it may have them)
        self.per_token = token_cost(model) if prefill_threads else 0
        self.last_logits_only = takes_logits_to_keep(model)
        self.max_batch = max_batch
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.steps = 0  # forward passes so far (prefills and decoding steps): for the tests

    def submit(self, job: Job) -> None:
        with self._cond:
            self._waiting.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="decode", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _take(self, room: int, block: bool) -> list[Job]:
        """Waiting jobs, at most ``room``, those cancelled while waiting dropped (they never
        start); blocks for the first when ``block``."""
        with self._cond:
            while block and not self._waiting:
                self._cond.wait()
            taken: list[Job] = []
            while self._waiting and len(taken) < room:
                job = self._waiting.popleft()
                if job.cancelled.is_set():
                    job.emit(None, time.perf_counter())
                else:
                    taken.append(job)
            return taken

    def _run(self) -> None:
        import torch

        # the whole loop in inference mode (not only the forward passes): the cache, the
        # logits and the chosen tokens are inference tensors, which only inference mode may
        # change in place; it skips autograd's bookkeeping per op (~10 % a token on a CPU)
        with torch.inference_mode():
            self._loop()

    def _loop(self) -> None:
        batch: _Batch | None = None
        while True:
            joining = self._take(self.max_batch - (len(batch.jobs) if batch else 0), batch is None)
            try:
                if joining:
                    batch = _Batch.join(batch, self._prefill(joining))
                    first_tokens_out(joining, FIRST_TOKEN_WAIT)
                if batch is not None:
                    batch = self._step(batch)
            except Exception as err:
                log.exception("Batched decoding failed")
                failed = {id(j): j for j in [*(batch.jobs if batch else []), *joining]}
                for job in failed.values():
                    job.emit(err, time.perf_counter())
                batch = None

    def _prefill(self, jobs: list[Job]) -> _Batch | None:
        """The prompts of ``jobs`` through the model at once, left-padded to one length; each
        job's first token is chosen and emitted."""
        import torch
        from transformers import DynamicCache

        longest = max(int(j.prompt_ids.shape[1]) for j in jobs)
        ids = torch.full((len(jobs), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), longest), dtype=torch.long)
        for i, job in enumerate(jobs):
            n = int(job.prompt_ids.shape[1])
            ids[i, longest - n :] = job.prompt_ids[0]
            mask[i, longest - n :] = 1
            if job.seed is not None:
                job.generator = torch.Generator().manual_seed(job.seed)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        big = self.per_token and ids.numel() * self.per_token >= PARALLEL_PREFILL
        with torch_threads(self.prefill_threads if big else None):
            logits = self._forward(ids, mask, positions, cache, jobs)
        batch = _Batch(jobs, cache, mask, positions[:, -1] + 1, torch.zeros(0))
        return self._choose(batch, logits)

    def _step(self, batch: _Batch) -> _Batch | None:
        """One token for every job in the batch."""
        import torch

        mask = torch.cat([batch.mask, torch.ones((len(batch.jobs), 1), dtype=torch.long)], 1)
        logits = self._forward(
            batch.next_ids.unsqueeze(1), mask, batch.positions.unsqueeze(1), batch.cache, batch.jobs
        )
        batch.mask, batch.positions = mask, batch.positions + 1
        return self._choose(batch, logits)

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any, jobs: list[Job]) -> Any:
        extra: dict[str, Any] = {}
        if any(j.adapter is not None for j in jobs):
            # adapters loaded by name on one base: each row names its own (peft's mixed-batch
            # inference), so requests for different adapters decode together
            extra["adapter_names"] = [j.adapter or BASE_ADAPTER for j in jobs]
        if self.last_logits_only:  # as generate asks: the prompt's other positions need none
            extra["logits_to_keep"] = 1
        if bool(mask.all()):
            # no row padded: the model's own causal mask is the same, and building a mask
            # from ours costs about a tenth of a small model's step
            mask = None
        with self.lock:
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                **extra,
            )
        self.steps += 1
        return out.logits[:, -1, :].float()

    def _choose(self, batch: _Batch, logits: Any) -> _Batch | None:
        """Each job's next token (greedy, or sampled with its temperature and top-p), emitted;
        jobs that are done (their length, an end token, cancelled) leave the batch."""

        delay = max(j.token_delay for j in batch.jobs)
        if delay:  # injected latency: the model really is this much slower
            time.sleep(delay)
        for i, job in enumerate(batch.jobs):
            if job.generated < job.min_tokens and self.ends:
                logits[i, list(self.ends)] = float("-inf")
        chosen = logits.argmax(-1)
        for i, job in enumerate(batch.jobs):
            if job.temperature > 0:
                chosen[i] = sample(logits[i], job.temperature, job.top_p, job.generator)
        made = time.perf_counter()
        keep = []
        for i, (job, token) in enumerate(zip(batch.jobs, chosen.tolist(), strict=True)):
            if job.cancelled.is_set():
                job.emit(None, made)
                continue
            job.generated += 1
            job.emit(int(token), made)
            if job.done(int(token), self.ends):
                job.emit(None, made)
            else:
                keep.append(i)
        batch.next_ids = chosen
        return batch.keep(keep)


def first_tokens_out(jobs: Sequence[Job], timeout: float) -> None:
    """Wait until each job's first token has gone out (its ``first_sent``), ``timeout`` in
    all at most."""
    deadline = time.perf_counter() + timeout
    for job in jobs:
        if job.first_sent is not None:
            job.first_sent.wait(max(0.0, deadline - time.perf_counter()))


def sample(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """A token drawn from softmax(logits / temperature), from the smallest set of the most likely
    tokens whose probability reaches ``top_p`` (nucleus sampling)."""
    import torch

    probs = torch.softmax(logits / temperature, -1)
    if top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        # keep a token while the mass before it is below top_p (the first always stays)
        outside = ordered.cumsum(-1) - ordered >= top_p
        ordered[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, ordered)
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass
class _Batch:
    """The jobs decoding together: their shared key/value cache (left-padded to one length), the
    attention mask over it, each job's next position and next input token."""

    jobs: list[Job]
    cache: Any
    mask: Any
    positions: Any
    next_ids: Any

    def keep(self, rows: Sequence[int]) -> _Batch | None:
        """Only ``rows`` of the batch (None when none is left)."""
        import torch

        if not rows:
            return None
        if len(rows) == len(self.jobs):
            return self
        from transformers import DynamicCache

        index = torch.tensor(rows, dtype=torch.long)
        self.jobs = [self.jobs[i] for i in rows]
        self.mask, self.positions = self.mask[index], self.positions[index]
        self.next_ids = self.next_ids[index]
        # the columns that only the jobs that left attended to (their longer prompts' padding
        # for the others) are dropped with them
        first = int((self.mask.sum(0) > 0).nonzero()[0])
        self.mask = self.mask[:, first:]
        self.cache = DynamicCache(
            [
                (layer.keys[index, :, first:], layer.values[index, :, first:])
                for layer in self.cache.layers
            ]
        )
        return self

    @staticmethod
    def join(running: _Batch | None, new: _Batch | None) -> _Batch | None:
        """One batch of two: the shorter cache is padded on the left to the longer's length
        (positions are per job, so padding moves nothing) and both are stacked."""
        import torch
        from transformers import DynamicCache

        if running is None or new is None:
            return running or new
        a, b = running.mask.shape[1], new.mask.shape[1]
        length = max(a, b)

        def padded(t: Any, have: int, dim: int) -> Any:
            if have == length:
                return t
            shape = list(t.shape)
            shape[dim] = length - have
            return torch.cat([t.new_zeros(shape), t], dim)

        layers = [
            (
                torch.cat([padded(x.keys, a, 2), padded(y.keys, b, 2)], 0),
                torch.cat([padded(x.values, a, 2), padded(y.values, b, 2)], 0),
            )
            for x, y in zip(running.cache.layers, new.cache.layers, strict=True)
        ]
        return _Batch(
            running.jobs + new.jobs,
            DynamicCache(layers),
            torch.cat([padded(running.mask, a, 1), padded(new.mask, b, 1)], 0),
            torch.cat([running.positions, new.positions]),
            torch.cat([running.next_ids, new.next_ids]),
        )
