#!/usr/bin/env python3
"""Generation speed of the built-in runtime's OpenAI-compatible API against a plain transformers
``generate`` loop on the same model and prompts.

The runtime (``python -m kubeforge_runtimes serve`` on 127.0.0.1) asked by the ``openai`` client,
streamed, one prompt after the other, then by ``--clients`` clients at once (it batches them).
Time to first token: request sent -> first chunk with text, by the ``openai`` client and by a
plain ``httpx`` stream; throughput: ``usage``'s completion tokens over the wall time. The
baseline, in the same run: ``model.generate`` in this process, greedy, timed from the prompt's
text (tokenizing included, as the runtime's server tokenizes) to the first token after which the
answer has text, by the runtime's stream's rule (a part of a character's bytes is held back),
one prompt after the other. Also the runtime's decoding loop
alone in this process (no HTTP), and a bare ASGI app asked as the runtime is by ``httpx``
(``bench/http_floor.py``: the HTTP request's own time here, which no server can go below), by
``httpx`` and by the ``openai`` client (whose own request building and parsing it adds). All
decode exactly ``max_tokens`` tokens greedily (``min_tokens`` on the runtime's side): the same
tokens on every side.

Ratios are medians of each round's ratio. Targets (issue #23): throughput ratio >= 1.0, time
to first token no worse.

    python bench/generation.py                       # the tiny GPT-2, 12 prompts x 32 tokens x 7
    python bench/generation.py --shape small --rounds 3   # GPT-2 small's shape (124M-ish)
    python bench/generation.py --shape small --vocab 50257 --rounds 3   # and GPT-2's vocabulary
    python bench/generation.py --model-dir DIR --max-tokens 64 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_floor
from kubeforge_labs import kserve_hf
from kubeforge_labs.canary import start_runtime
from kubeforge_pipelines.tinymodel import build_base_model, support_tickets
from kubeforge_runtimes.generation import releasable

NAME = "bench-lm"
# GPT-2 shapes for build_base_model. "small" is GPT-2 small's depth and width with the tiny
# tokenizer's vocabulary and no pretraining (greedy decoding of exactly max_tokens tokens makes
# the same tokens on both sides whatever the weights; what it measures is the time they take)
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {},
    "small": {"n_layer": 12, "n_embd": 768, "pretrain_steps": 0},
}
SIDES = ("runtime", "concurrent", "baseline")


def prompts(n: int) -> list[str]:
    return [t["text"].split("resolution:")[0] + "resolution:" for t in support_tickets(n, 5)]


def has_text(tokenizer: Any, tokens: list[int]) -> bool:
    """Whether the answer ``tokens`` has text a stream sends (not a part of a character)."""
    return releasable(tokenizer.decode(tokens, skip_special_tokens=True)) > 0


def grow_vocabulary(model_dir: Path, size: int) -> None:
    """Tokens ``<vN>`` added to the tokenizer and rows to the model's embeddings (and its tied
    head) up to ``size``: random weights pick among all of them, each its own text."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_tokens([f"<v{i}>" for i in range(len(tokenizer), size)])
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.resize_token_embeddings(len(tokenizer))
    tokenizer.save_pretrained(model_dir)
    model.save_pretrained(model_dir)


def baseline(model_dir: Path, texts: list[str], max_tokens: int) -> dict[str, float]:
    """Tokens/s and median time to first token of a plain greedy ``generate`` loop."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    first: list[float] = []

    class FirstText:
        """transformers' streamer interface (the first put is the prompt, every later one a
        generated token): the time until the answer has text to send, by the rule the
        runtime's stream sends text by (``generation.releasable``: not a character whose
        bytes have not all come)."""

        def __init__(self, started: float) -> None:
            self.started = started
            self.tokens: list[int] | None = None  # None until the prompt has come
            self.seen = False

        def put(self, value: Any) -> None:
            if self.tokens is None:
                self.tokens = []
                return
            self.tokens += value.reshape(-1).tolist()
            if not self.seen and has_text(tokenizer, self.tokens):
                first.append(time.perf_counter() - self.started)
                self.seen = True

        def end(self) -> None:
            pass

    tokens = 0
    began = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            started = time.perf_counter()  # the prompt's text in hand, as the runtime's client
            ids = tokenizer(text, return_tensors="pt")
            out = model.generate(
                **ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                pad_token_id=tokenizer.eos_token_id, streamer=FirstText(started),
            )  # fmt: skip
            new = out[0, ids["input_ids"].shape[1] :].tolist()
            eos = tokenizer.eos_token_id
            tokens += len(new) - (1 if new and new[-1] == eos else 0)
    wall = time.perf_counter() - began
    return {"tokens_per_s": tokens / wall, "ttft_s": statistics.median(first), "tokens": tokens}


def decoding_loop(model_dir: Path, texts: list[str], max_tokens: int) -> dict[str, float]:
    """The runtime's decoding loop alone (``kubeforge_runtimes.batching.Batcher``) in this
    process, one prompt after the other, as the baseline runs: what the loop itself does
    against ``generate``, without HTTP, the event loop or a client."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kubeforge_runtimes.batching import Batcher, Job

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ends = frozenset({int(tokenizer.eos_token_id)})
    batcher = Batcher(model, threading.Lock(), ends, int(tokenizer.eos_token_id))
    first: list[float] = []
    tokens = 0
    began = time.perf_counter()
    for text in texts:
        sent = time.perf_counter()
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        made: list[tuple[int, float]] = []
        done = threading.Event()

        def emit(token: Any, at: float, made: list[Any] = made, done: Any = done) -> None:
            if isinstance(token, int):
                made.append((token, at))
            else:
                done.set()

        batcher.submit(Job(ids, max_tokens, emit, threading.Event(), min_tokens=max_tokens))
        done.wait()
        ids_so_far = [token for token, _ in made]
        shown = next(k for k in range(len(made)) if has_text(tokenizer, ids_so_far[: k + 1]))
        first.append(made[shown][1] - sent)
        tokens += len(made)
    wall = time.perf_counter() - began
    return {"tokens_per_s": tokens / wall, "ttft_s": statistics.median(first), "tokens": tokens}


def runtime(
    url: str,
    texts: list[str],
    max_tokens: int,
    clients: int = 1,
    counts: dict[str, int] | None = None,
) -> dict[str, float]:
    """The same through the runtime's /openai/v1/completions, streamed, by ``clients`` clients
    at once (each its own ``openai`` client in a thread, taking the next prompt when done).
    ``counts``: each prompt's completion tokens, for a server whose stream reports no usage."""
    import openai

    first: list[float] = []
    tokens = [0]
    todo = list(reversed(texts))
    lock = threading.Lock()

    def client_loop() -> None:
        client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0)
        while True:
            with lock:
                if not todo:
                    return
                text = todo.pop()
            sent = time.perf_counter()
            seen = False
            stream = client.completions.create(
                model=NAME, prompt=text, max_tokens=max_tokens, temperature=0, stream=True,
                stream_options={"include_usage": True}, extra_body={"min_tokens": max_tokens},
            )  # fmt: skip
            for chunk in stream:
                if not seen and chunk.choices and chunk.choices[0].text:
                    first.append(time.perf_counter() - sent)
                    seen = True
                if chunk.usage is not None and counts is None:
                    with lock:
                        tokens[0] += chunk.usage.completion_tokens
            if counts is not None:
                with lock:
                    tokens[0] += counts[text]

    began = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    return {
        "tokens_per_s": tokens[0] / wall,
        "ttft_s": statistics.median(first),
        "tokens": tokens[0],
    }


def completion_tokens(url: str, texts: list[str], max_tokens: int) -> dict[str, int]:
    """Each prompt's completion tokens from a non-streamed request (greedy: the streamed answer
    is the same), for KServe's Hugging Face server, whose stream carries no usage."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0)
    counts = {}
    for text in texts:
        done = client.completions.create(model=NAME, prompt=text, max_tokens=max_tokens,
                                         temperature=0)  # fmt: skip
        assert done.usage is not None, "no usage in a non-streamed completion"
        counts[text] = done.usage.completion_tokens
    return counts


def first_token_over_http(url: str, texts: list[str], max_tokens: int) -> float:
    """Median time to the first chunk with text, read with a plain ``httpx`` stream: the
    runtime's own time to first token, without the ``openai`` client's request building and
    parsing (which the other measurement includes)."""
    import httpx

    times = []
    with httpx.Client() as http:
        for text in texts:
            body = {"model": NAME, "prompt": text, "max_tokens": max_tokens, "temperature": 0,
                    "stream": True, "min_tokens": max_tokens}  # fmt: skip
            first = None
            sent = time.perf_counter()
            with http.stream("POST", f"{url}/openai/v1/completions", json=body) as response:
                for line in response.iter_lines():
                    if first is None and line.startswith("data: {") and '"text":"' in line:
                        first = time.perf_counter() - sent
            if first is not None:
                times.append(first)
    return statistics.median(times)


def kserve_figures(rounds: list[dict[str, dict[str, float]]], version: str) -> dict[str, Any]:
    """KServe's Hugging Face server's medians, and the runtime's ratios to it (each the median
    of the rounds' ratios: above 1 the runtime is faster in throughput; below 1, in time to
    first token)."""

    def ratio(ours: str, theirs: str, key: str) -> float:
        return statistics.median(r[ours][key] / r[theirs][key] for r in rounds)

    sides = ("kserve_hf", "kserve_hf_concurrent")
    return {
        "version": version,
        "tokens": rounds[0]["kserve_hf"]["tokens"],
        "tokens_per_s": {s: statistics.median(r[s]["tokens_per_s"] for r in rounds) for s in sides},
        "ttft_s": {s: statistics.median(r[s]["ttft_s"] for r in rounds) for s in sides},
        "throughput_ratio": ratio("runtime", "kserve_hf", "tokens_per_s"),
        "concurrent_throughput_ratio": ratio("concurrent", "kserve_hf_concurrent", "tokens_per_s"),
        "ttft_ratio": ratio("runtime", "kserve_hf", "ttft_s"),
        "concurrent_ttft_ratio": ratio("concurrent", "kserve_hf_concurrent", "ttft_s"),
    }


def measure_rounds(
    args: argparse.Namespace, model_dir: Path, texts: list[str], proc: Any, floor: Any, other: Any
) -> tuple[list[dict[str, dict[str, float]]], list[float], list[float]]:
    """Each round's figures of every side, and its ``httpx`` first token: runtime, floor."""
    rounds: list[dict[str, dict[str, float]]] = []
    http_ttft: list[float] = []
    floor_ttft: list[float] = []
    runtime(proc.url, texts[:2], 4)  # warm both paths once
    baseline(model_dir, texts[:2], 4)
    counts = completion_tokens(other.url, texts, args.max_tokens) if other else {}
    for _ in range(args.rounds):
        rounds.append(
            {
                "runtime": runtime(proc.url, texts, args.max_tokens),
                "concurrent": runtime(proc.url, texts, args.max_tokens, args.clients),
                "baseline": baseline(model_dir, texts, args.max_tokens),
            }
        )
        if other:
            rounds[-1]["kserve_hf"] = runtime(other.url, texts, args.max_tokens, 1, counts)
            rounds[-1]["kserve_hf_concurrent"] = runtime(
                other.url, texts, args.max_tokens, args.clients, counts
            )
        http_ttft.append(first_token_over_http(proc.url, texts, args.max_tokens))
        floor_ttft.append(first_token_over_http(floor.url, texts, args.max_tokens))
        # the floor asked by the openai client too: its own request building and parsing
        rounds[-1]["openai_floor"] = runtime(floor.url, texts, args.max_tokens)
    return rounds, http_ttft, floor_ttft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a causal LM (default: the tiny GPT-2)")
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="tiny",
        help="without --model-dir, the GPT-2 built here: tiny (2 layers x 64, pretrained; its "
        "prefill takes about 2 ms) or small (GPT-2 small's 12 layers x 768, random weights: "
        "tokens of tens of milliseconds, as a real model's on a CPU)",
    )
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--clients", type=int, default=4, help="clients at once in the concurrent measurement"
    )
    parser.add_argument(
        "--runtime-threads",
        type=int,
        help="the runtime's torch threads (OMP_NUM_THREADS; default: the runtime's own choice, "
        "its CPUs less one for the event loop: kubeforge_runtimes.threads)",
    )
    parser.add_argument(
        "--vocab",
        type=int,
        help="grow the built model's vocabulary to this many tokens (GPT-2's: 50257) with added "
        "tokens: the language-model head's product at a real model's size",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--kserve-hf",
        action="store_true",
        help="also measure KServe's own Hugging Face server (its transformers backend, from "
        "KServe's source in Go's module cache: kubeforge_labs/kserve_hf.py) on the same model "
        "and prompts",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubeforge-bench-gen-"))
    model_dir = args.model_dir or build_base_model(work / "model", **SHAPES[args.shape])
    if args.vocab:
        grow_vocabulary(model_dir, args.vocab)
    texts = prompts(args.prompts)
    kserve = kserve_hf.prepare() if args.kserve_hf else None
    proc = start_runtime(
        work, model_dir, name=NAME, namespace="bench", revision="rbench",
        max_new_tokens=args.max_tokens, torch_threads=args.runtime_threads,
    )  # fmt: skip
    floor = http_floor.start(work)
    other = None
    if kserve:
        same = kserve_hf.exactly(model_dir, work / "model-kserve", args.max_tokens)
        other = kserve_hf.start(work / "kserve-hf", same, NAME, kserve[1])
    try:
        rounds, http_ttft, floor_ttft = measure_rounds(args, model_dir, texts, proc, floor, other)
    finally:
        proc.stop()
        floor.stop()
        if other:
            other.stop()
    # last, once, beside a baseline of its own: its decoding thread stays in this process, and
    # the rounds' baselines are measured without it
    alone = {
        "baseline": baseline(model_dir, texts, args.max_tokens),
        "loop": decoding_loop(model_dir, texts, args.max_tokens),
    }

    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "prompts": len(texts),
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "clients": args.clients,
        "runtime_threads": args.runtime_threads or "the runtime's choice",
        "tokens": {side: rounds[0][side]["tokens"] for side in SIDES},
        "tokens_per_s": {side: med(side, "tokens_per_s") for side in SIDES},
        "ttft_s": {side: med(side, "ttft_s") for side in SIDES},
    }

    # each ratio is the median of the rounds' ratios (both sides of a round ran within seconds
    # of each other): on a shared VM the machine's speed drifts by tens of percent from one
    # minute to the next, which a ratio of medians taken minutes apart would count
    def ratio(side: str, key: str) -> float:
        return statistics.median(r[side][key] / r["baseline"][key] for r in rounds)

    result["throughput_ratio"] = ratio("runtime", "tokens_per_s")
    result["concurrent_throughput_ratio"] = ratio("concurrent", "tokens_per_s")
    result["ttft_ratio"] = ratio("runtime", "ttft_s")
    result["loop_alone"] = alone
    result["loop_throughput_ratio"] = (
        alone["loop"]["tokens_per_s"] / alone["baseline"]["tokens_per_s"]
    )
    result["loop_ttft_ratio"] = alone["loop"]["ttft_s"] / alone["baseline"]["ttft_s"]
    result["ttft_http_s"] = statistics.median(http_ttft)
    result["ttft_http_ratio"] = result["ttft_http_s"] / result["ttft_s"]["baseline"]
    # the first token less the HTTP request's own time (bench/http_floor.py), against the loop's
    result["http_floor_s"] = statistics.median(floor_ttft)
    result["ttft_http_less_floor_ratio"] = (
        result["ttft_http_s"] - result["http_floor_s"]
    ) / result["ttft_s"]["baseline"]
    result["openai_floor_s"] = med("openai_floor", "ttft_s")
    result["ttft_less_openai_floor_ratio"] = statistics.median(
        (r["runtime"]["ttft_s"] - r["openai_floor"]["ttft_s"]) / r["baseline"]["ttft_s"]
        for r in rounds
    )
    if kserve:
        result["kserve_hf"] = kserve_figures(rounds, kserve[0])
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
