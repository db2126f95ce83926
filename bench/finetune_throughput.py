#!/usr/bin/env python3
"""Fine-tune throughput: tokens/s of kubeforge's fine-tune step against a plain transformers
Trainer + peft LoRA loop and against TRL's SFTTrainer with packing (when TRL is installed:
``make bench-finetune``), on the same model, data and hyperparameters, in the same
process.

Tokens are real text tokens (padding never counts). Each side is timed from loading the base
model to the saved adapter, as a pipeline step runs; the runs alternate (ours, baseline, ours,
...) and the medians are compared. Target: ratio >= 1.0.

The baseline is the Trainer + peft loop the peft and transformers docs show: each example
tokenised on its own (truncated to max_seq_length) and padded per batch by
DataCollatorForLanguageModeling. Ours packs the texts into full blocks (see
kubeforge_pipelines.train). Two baselines are reported: the same per-device batch size (what a
user sets in spec.hyperparameters.batchSize), and a batch size scaled up so that its padded
batches hold as many token positions as ours, so that the ratio is not just a bigger batch.

    python bench/finetune_throughput.py                  # CPU: a 4-layer, 256-wide GPT-2
    python bench/finetune_throughput.py --layers 12 --width 768 --steps 100   # GPT-2 small size
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def variable_length_texts(n: int, seed: int) -> list[str]:
    """Support tickets joined 1 to 8 per row: lengths vary as in real chat or ticket data."""
    import random

    from kubeforge_pipelines.tinymodel import support_tickets

    rng = random.Random(seed)
    tickets = [r["text"] for r in support_tickets(n * 8, seed=seed)]
    out, i = [], 0
    for _ in range(n):
        k = rng.randint(1, 8)
        out.append(" ".join(tickets[i : i + k]))
        i += k
    return out


def run_ours(base: Path, texts: list[str], settings: Any, work: Path) -> tuple[int, float]:
    from kubeforge_pipelines import train

    started = time.perf_counter()
    result = train.fine_tune(base, texts, work / "out", work / "ckpt", settings)
    return result.tokens, time.perf_counter() - started


def run_baseline(
    base: Path, texts: list[str], settings: Any, batch_size: int, work: Path
) -> tuple[int, float]:
    """The docs' Trainer + peft loop: per-example tokenisation, dynamic padding."""
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base)
    tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(base)
    model = get_peft_model(model, _lora(settings))
    encoded = [
        {"input_ids": ids}
        for ids in tok(
            [t + tok.eos_token for t in texts], truncation=True, max_length=settings.max_seq_length
        )["input_ids"]
    ]
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    counted = {"tokens": 0}

    def counting(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collator(features)
        counted["tokens"] += int(batch["attention_mask"].sum())
        return batch

    args = TrainingArguments(**_trainer_args(settings, work / "baseline", batch_size))
    Trainer(model=model, args=args, train_dataset=encoded, data_collator=counting).train()
    model.save_pretrained(work / "baseline-out")
    return counted["tokens"], time.perf_counter() - started


def run_trl(
    base: Path, texts: list[str], settings: Any, work: Path, checkpointing: bool
) -> tuple[int, float]:
    """TRL's ``SFTTrainer``, the standard supervised fine-tuning trainer, with packing: texts
    tokenised with an end token and wrapped into full ``max_seq_length`` blocks (the packing a
    CPU's eager attention can take: TRL's default best-fit packing is padding-free and needs
    flash attention), LoRA by its ``peft_config``. ``checkpointing``: TRL's default gradient
    checkpointing (activations recomputed in the backward pass to save memory), or off, as ours
    and the other baseline run: the same computation, step for step."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base)
    tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(base)
    counted = {"tokens": 0}
    config = SFTConfig(
        **_trainer_args(settings, work / "trl", settings.batch_size),
        packing=True,
        packing_strategy="wrapped",
        gradient_checkpointing=checkpointing,
        max_length=settings.max_seq_length,
        dataset_text_field="text",
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict({"text": texts}),
        processing_class=tok,
        peft_config=_lora(settings),
    )

    # counted as the model computes them (the data loader may prepare a batch more than is
    # trained): real tokens of each training forward pass
    def counting(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if module.training:
            mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids")
            counted["tokens"] += int(mask.sum()) if mask is not None else int(ids.numel())

    trainer.model.register_forward_pre_hook(counting, with_kwargs=True)
    trainer.train()
    trainer.model.save_pretrained(work / "trl-out")
    return counted["tokens"], time.perf_counter() - started


def _lora(settings: Any) -> Any:
    """The same LoRA settings for every baseline (peft's LoraConfig, as the docs write it)."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules or None,
        task_type="CAUSAL_LM",
    )


def _trainer_args(settings: Any, output_dir: Path, batch_size: int) -> dict[str, Any]:
    """The Trainer settings every baseline shares: the run's steps, learning rate and seed, no
    checkpoints, no logging to speak of."""
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": batch_size,
        "max_steps": settings.max_steps,
        "learning_rate": settings.learning_rate,
        "seed": settings.seed,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "logging_steps": 10**6,
        "use_cpu": not _cuda(),
        "bf16": _cuda(),
    }


TRL_DEFAULTS, TRL_SAME = "trl_sft_packed", "trl_sft_packed_no_ckpt"


def ratio_to(medians: dict[str, float], name: str) -> float | None:
    return round(medians["ours"] / medians[name], 2) if name in medians else None


def _trl_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from kubeforge_pipelines import train
    from kubeforge_pipelines.tinymodel import build_base_model

    texts = variable_length_texts(args.rows, seed=5)
    settings = train.TrainSettings(
        method="lora",
        target_modules=["c_attn", "c_proj", "c_fc"],
        max_steps=args.steps,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        learning_rate=1e-3,
        save_steps=10**6,
    )
    with tempfile.TemporaryDirectory(prefix="kubeforge-bench-") as tmp:
        root = Path(tmp)
        base = build_base_model(
            root / "base", n_layer=args.layers, n_embd=args.width, pretrain_steps=0
        )
        tokenizer = AutoTokenizer.from_pretrained(base)
        lengths = [len(x) for x in train.tokenize(tokenizer, texts)]
        mean_len = min(statistics.mean(lengths), args.max_seq_length)
        scaled = max(args.batch_size, round(args.batch_size * args.max_seq_length / mean_len))
        variants = ["ours", "baseline", "baseline_scaled"]
        if _trl_installed():
            variants += [TRL_DEFAULTS, TRL_SAME]
        else:
            print("  (TRL is not installed: make bench-finetune adds its SFTTrainer)")
        results: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(args.repeats):
            for name in variants:
                work = root / f"{name}-{r}"
                if name == "ours":
                    tokens, seconds = run_ours(base, texts, settings, work)
                elif name in (TRL_DEFAULTS, TRL_SAME):
                    tokens, seconds = run_trl(base, texts, settings, work, name == TRL_DEFAULTS)
                else:
                    bs = args.batch_size if name == "baseline" else scaled
                    tokens, seconds = run_baseline(base, texts, settings, bs, work)
                results[name].append(tokens / seconds)
                print(
                    f"  run {r + 1} {name:16s} {tokens:8d} tokens in {seconds:6.2f}s "
                    f"= {tokens / seconds:9.0f} tokens/s",
                    flush=True,
                )
    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, "
        + (torch.cuda.get_device_name(0) if _cuda() else "CPU"),
        "model": f"GPT-2 {args.layers} layers x {args.width}",
        "rows": args.rows,
        "meanTokensPerRow": round(statistics.mean(lengths), 1),
        "steps": args.steps,
        "batchSize": args.batch_size,
        "scaledBaselineBatchSize": scaled,
        "maxSeqLength": args.max_seq_length,
        "tokensPerSecond": {k: round(v) for k, v in med.items()},
        "ratio": round(med["ours"] / med["baseline"], 2),
        "ratioVsScaledBatch": round(med["ours"] / med["baseline_scaled"], 2),
        # against TRL as it runs by default, and with its gradient checkpointing off (the
        # same computation as ours: the ratio is what packing and the loop change, not memory)
        "ratioVsTrlSftPacked": ratio_to(med, TRL_DEFAULTS),
        "ratioVsTrlSftPackedNoCheckpointing": ratio_to(med, TRL_SAME),
        "target": ">= 1.0",
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ratio"] >= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
