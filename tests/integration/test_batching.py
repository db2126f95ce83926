"""Continuous batching of the OpenAI-compatible API (``kubeforge_runtimes.batching``) on the
project's tiny GPT-2: the same tokens as transformers' ``generate`` for every request however
requests join and leave the batch, fewer forward passes than tokens, seeded sampling that does
not depend on the neighbours, cancellation, a failing model, and the models it must refuse."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kubeforge_runtimes import batching
from kubeforge_runtimes.batching import (
    Batcher,
    Job,
    sample,
    skip_padding_check,
    supports,
    takes_logits_to_keep,
)
from kubeforge_runtimes.threads import token_cost

pytestmark = pytest.mark.no_cluster  # one process, no cluster

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def lm(tiny_base_model: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_model)
    return AutoModelForCausalLM.from_pretrained(tiny_base_model).eval(), tokenizer


PROMPTS = [
    "ticket: the vpn fails after the update. resolution:",
    "ticket: printer offline. resolution:",
    "ticket: cannot log in to the portal since monday, password reset did not help. resolution:",
    "ticket: disk full. resolution:",
    "ticket: email bounces when sending to the finance team. resolution:",
    "ticket: laptop is slow. resolution:",
]


class Collected:
    """What the batching thread emitted for one job."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.end: BaseException | str | None = "open"
        self.finished = threading.Event()

    def emit(self, item: int | BaseException | None, made: float) -> None:
        if isinstance(item, int):
            assert self.end == "open", "a token after the end"
            self.tokens.append(item)
        else:
            self.end = item
            self.finished.set()


def _job(tokenizer: Any, prompt: str, n: int, out: Collected, **kw: Any) -> Job:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    return Job(ids, n, out.emit, kw.pop("cancelled", threading.Event()), **kw)


def _generate(lm: tuple[Any, Any], prompt: str, n: int) -> list[int]:
    model, tokenizer = lm
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
            min_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
    return list(out[0, ids.shape[1] :].tolist())


def _batcher(lm: tuple[Any, Any]) -> Batcher:
    model, tokenizer = lm
    return Batcher(model, threading.Lock(), frozenset([tokenizer.eos_token_id]), 0)


def test_every_request_gets_the_tokens_generate_makes_however_requests_join_and_leave(
    lm: tuple[Any, Any],
) -> None:
    batcher = _batcher(lm)
    wanted = {i: 20 - 3 * (i % 3) for i in range(len(PROMPTS))}  # they leave at different steps
    outs = {i: Collected() for i in wanted}
    for i, prompt in enumerate(PROMPTS):
        steps = batcher.steps
        batcher.submit(_job(lm[1], prompt, wanted[i], outs[i], min_tokens=wanted[i]))
        if i % 2:  # some join a batch that is already decoding: the next after a step of it
            # (waited for by count, not by time: a sleep spans more steps on a faster machine,
            # and the jobs stopped overlapping on an idle one)
            deadline = time.monotonic() + 30
            while batcher.steps == steps and time.monotonic() < deadline:
                time.sleep(0.001)
    for out in outs.values():
        assert out.finished.wait(60)
    for i, prompt in enumerate(PROMPTS):
        assert outs[i].end is None
        assert outs[i].tokens == _generate(lm, prompt, wanted[i]), PROMPTS[i]
    # batched: far fewer forward passes than the tokens made
    assert batcher.steps < sum(wanted.values()) / 2


def test_after_a_prefill_the_batch_waits_for_the_first_tokens_to_go_out(
    lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next decoding step does not take the CPU before the new request's first token has
    gone out (its ``first_sent``), or the wait has run out."""
    from kubeforge_runtimes import batching

    monkeypatch.setattr(batching, "FIRST_TOKEN_WAIT", 30.0)
    batcher = _batcher(lm)
    out, sent = Collected(), threading.Event()
    batcher.submit(_job(lm[1], PROMPTS[0], 8, out, min_tokens=8, first_sent=sent))
    deadline = time.monotonic() + 30
    while not out.tokens and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # tens of steps of the tiny model, had it gone on
    assert (batcher.steps, len(out.tokens)) == (1, 1)
    sent.set()
    assert out.finished.wait(60)
    assert out.tokens == _generate(lm, PROMPTS[0], 8)
    assert batcher.steps == 8
    # with nobody to wait for (first_sent unset), no wait at all
    other = Collected()
    batcher.submit(_job(lm[1], PROMPTS[1], 8, other, min_tokens=8))
    assert other.finished.wait(10)


def test_an_end_token_ends_a_request_once_min_tokens_are_made(lm: tuple[Any, Any]) -> None:
    _model, tokenizer = lm
    eos = tokenizer.eos_token_id
    free = Collected()
    batcher = _batcher(lm)
    batcher.submit(_job(tokenizer, PROMPTS[0], 60, free))
    assert free.finished.wait(60)
    if eos not in free.tokens:
        pytest.fail(f"the tiny model never ended {PROMPTS[0]!r} within 60 tokens: pick another")
    assert free.tokens[-1] == eos
    assert len(free.tokens) < 60
    held = Collected()
    batcher.submit(_job(tokenizer, PROMPTS[0], 60, held, min_tokens=len(free.tokens) + 2))
    assert held.finished.wait(60)
    assert eos not in held.tokens[: len(free.tokens) + 2]


def test_seeded_sampling_does_not_depend_on_the_neighbours(lm: tuple[Any, Any]) -> None:
    tokenizer = lm[1]
    alone, batched, other = Collected(), Collected(), Collected()
    sampled = {"temperature": 1.0, "top_p": 0.9, "seed": 7, "min_tokens": 12}
    batcher = _batcher(lm)
    batcher.submit(_job(tokenizer, PROMPTS[1], 12, alone, **sampled))
    assert alone.finished.wait(60)
    batcher.submit(_job(tokenizer, PROMPTS[2], 12, other, temperature=1.5, min_tokens=12))
    batcher.submit(_job(tokenizer, PROMPTS[1], 12, batched, **sampled))
    assert batched.finished.wait(60)
    assert batched.tokens == alone.tokens
    assert alone.tokens != _generate(lm, PROMPTS[1], 12)  # really sampled, not greedy


def test_a_cancelled_request_leaves_and_one_cancelled_while_waiting_never_starts(
    lm: tuple[Any, Any],
) -> None:
    tokenizer = lm[1]
    batcher = _batcher(lm)
    stop_a, stop_b = threading.Event(), threading.Event()
    stop_b.set()  # the client went away before its turn
    a, b, c = Collected(), Collected(), Collected()
    batcher.submit(_job(tokenizer, PROMPTS[0], 200, a, cancelled=stop_a, min_tokens=200))
    batcher.submit(_job(tokenizer, PROMPTS[1], 10, b, cancelled=stop_b))
    batcher.submit(_job(tokenizer, PROMPTS[2], 10, c, min_tokens=10))
    assert c.finished.wait(60)
    stop_a.set()
    assert a.finished.wait(10)
    assert len(a.tokens) < 200
    assert b.finished.is_set()
    assert b.tokens == []
    assert c.tokens == _generate(lm, PROMPTS[2], 10)


def test_a_failing_model_fails_the_batch_and_the_next_request_is_served(
    lm: tuple[Any, Any],
) -> None:
    model, tokenizer = lm
    calls = {"n": 0}

    def flaky(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory")
        return model(**kwargs)

    batcher = Batcher(flaky, threading.Lock(), frozenset([tokenizer.eos_token_id]), 0)
    batcher.model.config = model.config  # type: ignore[attr-defined]
    first, second = Collected(), Collected()
    batcher.submit(_job(tokenizer, PROMPTS[0], 10, first, min_tokens=10))
    assert first.finished.wait(60)
    assert isinstance(first.end, RuntimeError)
    batcher.submit(_job(tokenizer, PROMPTS[0], 5, second, min_tokens=5))
    assert second.finished.wait(60)
    assert second.end is None
    assert second.tokens == _generate(lm, PROMPTS[0], 5)


def test_the_padding_check_is_off_on_the_served_model_alone(tiny_base_model: Path) -> None:
    """transformers' per-pass padding check (a few percent of a small model's step) is off on
    every transformers module of the model the batcher decodes, which still decodes as
    ``generate`` does; another model of the same class keeps it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

    served = AutoModelForCausalLM.from_pretrained(tiny_base_model)
    other = AutoModelForCausalLM.from_pretrained(tiny_base_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_model)
    skip_padding_check(served)
    check = "warn_if_padding_and_no_attention_mask"
    modules = [m for m in served.modules() if isinstance(m, PreTrainedModel)]
    assert len(modules) >= 2  # the LM head's model and the transformer inside it
    assert all(check in vars(m) for m in modules)
    assert not any(check in vars(m) for m in other.modules())
    done = Collected()
    batcher = Batcher(served, threading.Lock(), frozenset([tokenizer.eos_token_id]), 0)
    batcher.submit(_job(tokenizer, PROMPTS[0], 6, done, min_tokens=6))
    assert done.finished.wait(60)
    assert done.tokens == _generate((other, tokenizer), PROMPTS[0], 6)


def test_the_head_computes_the_last_position_alone(
    lm: tuple[Any, Any], tiny_base_model: Path
) -> None:
    """Each forward pass, the prompt's too, asks the language-model head for the last position
    alone (as ``generate`` does), and the tokens are ``generate``'s; a peft model is asked
    through its base model; a callable without that argument is not asked."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model, tokenizer = lm
    positions: list[int] = []
    hook = model.lm_head.register_forward_hook(lambda m, a, o: positions.append(a[0].shape[1]))
    done = Collected()
    try:
        batcher = Batcher(model, threading.Lock(), frozenset([tokenizer.eos_token_id]), 0)
        batcher.submit(_job(tokenizer, PROMPTS[0], 4, done, min_tokens=4))
        assert done.finished.wait(60)
    finally:
        hook.remove()
    assert len(tokenizer(PROMPTS[0])["input_ids"]) > 1
    assert positions == [1] * 4  # the prefill and three steps, one position each
    assert done.tokens == _generate(lm, PROMPTS[0], 4)
    lora = LoraConfig(r=2, target_modules=["c_attn"], task_type="CAUSAL_LM")
    assert takes_logits_to_keep(
        get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base_model), lora)
    )
    assert not takes_logits_to_keep(lambda **kwargs: None)


def test_a_big_prefill_takes_the_prefill_threads_and_the_steps_keep_their_own(
    lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prefill whose work (prompt tokens x ``token_cost``) reaches ``PARALLEL_PREFILL`` runs
    on the batcher's ``prefill_threads``; a smaller one and every decoding step on the thread's
    own; the tokens are ``generate``'s either way."""
    model, tokenizer = lm
    short, long = PROMPTS[1], PROMPTS[2]
    lengths = [len(tokenizer(p)["input_ids"]) for p in (short, long)]
    assert lengths[0] < lengths[1]
    per_token = token_cost(model)
    embeddings = model.get_input_embeddings().weight.numel()
    assert per_token == sum(p.numel() for p in model.parameters()) - embeddings
    monkeypatch.setattr(batching, "PARALLEL_PREFILL", per_token * lengths[1])
    more = torch.get_num_threads() + 1  # what this process's threads would not have
    batcher = Batcher(model, threading.Lock(), frozenset([tokenizer.eos_token_id]), 0,
                      prefill_threads=more)  # fmt: skip
    seen: list[tuple[int, int]] = []  # the batcher's passes: (positions, torch's threads)

    def record(module: Any, args: Any, out: Any) -> None:
        if threading.current_thread() is batcher._thread:  # not generate's, in this thread
            seen.append((args[0].shape[1], torch.get_num_threads()))

    hook = model.transformer.wte.register_forward_hook(record)
    try:
        for prompt in (long, short):
            done = Collected()
            batcher.submit(_job(tokenizer, prompt, 3, done, min_tokens=3))
            assert done.finished.wait(60)
            assert done.tokens == _generate(lm, prompt, 3)
    finally:
        hook.remove()
    own = seen[1][1]
    assert own != more
    assert seen == [(lengths[1], more), (1, own), (1, own), (lengths[0], own), (1, own), (1, own)]
    assert token_cost(lambda **kwargs: None) == 0  # no module: never more threads


def test_supports_plain_models_but_not_prompt_tuning(lm: tuple[Any, Any]) -> None:
    assert supports(lm[0])
    tuned = SimpleNamespace(active_peft_config=SimpleNamespace(is_prompt_learning=True))
    assert not supports(tuned)


def test_nucleus_sampling_keeps_only_the_most_likely_tokens() -> None:
    logits = torch.tensor([0.0, 5.0, 4.0, -3.0])
    g = torch.Generator().manual_seed(0)
    assert {sample(logits, 1.0, 0.5, g) for _ in range(50)} == {1}  # token 1 alone is > 0.5
    assert {sample(logits, 1.0, 0.95, g) for _ in range(200)} == {1, 2}
    assert {sample(logits, 0.01, 1.0, g) for _ in range(50)} == {1}  # cold: greedy


def test_the_batched_and_the_one_at_a_time_paths_answer_alike(lm: tuple[Any, Any]) -> None:
    """``generation.generate`` with the batcher, and without it (transformers' ``generate`` in a
    thread, which prompt-tuned adapters keep): the same text, tokens and finish reason."""
    import asyncio

    from kubeforge_runtimes.generation import Sampling, TokenMetrics, generate

    model, tokenizer = lm
    metrics = TokenMetrics("ns", "batching-test", "r1")
    ids = tokenizer(PROMPTS[4], return_tensors="pt")["input_ids"]

    async def answer(batcher: Batcher | None) -> Any:
        steps = generate(
            model, tokenizer, threading.Lock(), ids, Sampling(12, min_tokens=12), metrics,
            batcher=batcher,
        )  # fmt: skip
        return [state async for _, state in steps][-1]

    one_at_a_time = asyncio.run(answer(None))
    batched = asyncio.run(answer(_batcher(lm)))
    assert batched.token_ids == one_at_a_time.token_ids == _generate(lm, PROMPTS[4], 12)
    assert (batched.text, batched.finish_reason) == (one_at_a_time.text, "length")


def test_a_request_starts_when_asked_and_one_dropped_unread_stops(
    lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``generation.generate`` hands the request to the model when called, before its stream is
    read (the prefill runs while the response starts); a stream dropped unread (the client left
    before its response began) stops the request as closing it would."""
    import asyncio

    from prometheus_client import REGISTRY

    from kubeforge_runtimes import batching
    from kubeforge_runtimes.generation import Sampling, TokenMetrics, generate

    # the batch holds after its first token until that token has gone out, or the request ends
    monkeypatch.setattr(batching, "FIRST_TOKEN_WAIT", 30.0)
    model, tokenizer = lm
    batcher = _batcher(lm)
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    metrics = TokenMetrics("ns", "batching-test", "r1")

    async def ask_then_leave() -> None:
        steps = generate(
            model, tokenizer, threading.Lock(), ids, Sampling(400, min_tokens=400), metrics,
            batcher=batcher,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while batcher.steps == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert batcher.steps == 1  # the prefill ran, nothing read yet
        del steps

    asyncio.run(ask_then_leave())
    running = REGISTRY.get_sample_value(
        "vllm:num_requests_running",
        {"namespace": "ns", "model_name": "batching-test", "revision": "r1", "adapter": ""},
    )
    assert running == 0  # counted only once read: a stream dropped unread leaves no trace there
    deadline = time.monotonic() + 10
    while batcher.steps < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # hundreds of steps of the tiny model, had it gone on
    assert batcher.steps == 2  # the step it was in when it was dropped, then it left
