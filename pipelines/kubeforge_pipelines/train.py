"""The fine-tune and evaluate steps: LoRA (peft) or full fine-tuning of a Hugging Face causal LM
with the transformers Trainer, and loss/perplexity on the held-out split.

What we add on top of a plain Trainer loop, and why:
- **packing**: the tokenised texts (each ended by EOS) are concatenated and cut into blocks of
  ``max_seq_length``, so no step computes on padding; tokens/s of real text is what counts
  (``bench/finetune_throughput.py`` measures it against an unpacked Trainer + peft loop);
- **checkpoints and resume**: checkpoints go to ``checkpoint_dir``; a restarted step carries on
  from the newest one instead of starting over;
- **checks before any compute**: a base model directory that is not a causal LM in the
  Hugging Face format, or LoRA target modules the model does not have, fail with a message that
  says so (:class:`ModelError`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubeforge_pipelines import cgroups, checkpoints
from kubeforge_pipelines.methods import (
    LOW_RANK,
    METHODS,
    ModelError,
    check_target_modules,
    lora_model,
    prompt_tuned_model,
    quantized_base,
    require_bitsandbytes,
)

TRAIN_INFO = "kubeforge-train.json"


class TrainSettings(BaseModel):
    """The fine-tune step's settings. Lax types: kfp passes dict parameters as protobuf
    Structs, whose numbers arrive as floats (8.0 for 8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "lora"  # one of METHODS
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = Field(default_factory=list)
    epochs: int = 1
    learning_rate: float = 2e-4
    batch_size: int = 8
    max_steps: int | None = None
    max_seq_length: int = 512
    seed: int = 42
    packing: bool = True
    save_steps: int = 50
    virtual_tokens: int = 20  # promptTuning
    prompt_init_text: str = ""  # promptTuning: where the virtual tokens start; "" random


@dataclass(frozen=True)
class TrainResult:
    steps: int
    tokens: int  # real (non-padding) tokens trained on
    seconds: float
    train_loss: float
    resumed_from: str | None
    resumed_from_step: int = 0
    restart_reason: str | None = None  # why existing checkpoints were not used
    # the training loss as the Trainer logged it ({step, loss}), this attempt's steps
    loss_curve: tuple[dict[str, float], ...] = ()

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[dict[str, Any]], None]
LOSS_CURVE_POINTS = 32  # what a FineTuneJob's status keeps (a termination message holds 4 KiB)


def thin(
    points: list[dict[str, float]], at_most: int = LOSS_CURVE_POINTS
) -> list[dict[str, float]]:
    """At most ``at_most`` of ``points``, evenly spread, the first and the last kept."""
    if len(points) <= at_most:
        return list(points)
    stride = (len(points) - 1) / (at_most - 1)
    return [points[round(i * stride)] for i in range(at_most)]


def check_base_model(model_dir: Path) -> dict[str, Any]:
    """The model's config.json, after checking that transformers can load it as a causal LM."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    )

    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"{model_dir} is not a Hugging Face model directory (no config.json); "
            "kubeforge fine-tunes causal LMs saved with save_pretrained"
        )
    config: dict[str, Any] = json.loads(config_file.read_text())
    model_type = config.get("model_type")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(
            f"unknown model format: model_type {model_type!r} in {config_file} is not a causal "
            "language model that transformers can fine-tune"
        )
    if not any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ModelError(f"{model_dir} has no tokenizer (tokenizer.json or tokenizer_config.json)")
    return config


def block_size(tokenizer: Any, model: Any, max_seq_length: int) -> int:
    """Tokens per block: the setting, within the model's positions less the virtual tokens a
    prompt-tuned model puts before each block."""
    config = model.config
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if limit:
        limit = int(limit) - virtual_tokens(model)
    return min(max_seq_length, limit) if limit else max_seq_length


def virtual_tokens(model: Any) -> int:
    """The virtual tokens a prompt-tuned peft model puts before the input (0 for others)."""
    config = (getattr(model, "peft_config", None) or {}).get("default")
    return int(getattr(config, "num_virtual_tokens", 0) or 0) if config is not None else 0


def pack(token_lists: list[list[int]], block: int) -> list[list[int]]:
    """Concatenate the sequences and cut them into blocks of ``block`` tokens; the tail that
    does not fill a block is dropped unless it is all there is."""
    flat = [t for seq in token_lists for t in seq]
    if len(flat) <= block:
        return [flat] if flat else []
    return [flat[i : i + block] for i in range(0, len(flat) - block + 1, block)]


def tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[*seq, eos] for seq in ids]


def check_method(base_dir: Path, settings: TrainSettings) -> dict[str, Any]:
    """Everything about the model and method that can be checked without loading weights: the
    format, and the LoRA target modules (on a skeleton of the model on the meta device)."""
    from accelerate import init_empty_weights  # type: ignore[import-untyped]
    from transformers import AutoConfig, AutoModelForCausalLM

    config = check_base_model(base_dir)
    if settings.method not in METHODS:
        raise ModelError(f"unknown method {settings.method!r} ({', '.join(METHODS)})")
    if settings.method == "qlora":
        require_bitsandbytes()
    if settings.method in LOW_RANK and settings.target_modules:
        with init_empty_weights():
            skeleton = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
                AutoConfig.from_pretrained(base_dir)
            )
        check_target_modules(skeleton, settings)
    return config


def load_for_training(base_dir: Path, settings: TrainSettings) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_base_model(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if settings.method == "qlora":
        model = quantized_base(base_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir)
    if settings.method in LOW_RANK:
        model = lora_model(model, settings)
    elif settings.method == "promptTuning":
        model = prompt_tuned_model(model, base_dir, settings)
    elif settings.method != "full":
        raise ModelError(f"unknown method {settings.method!r} ({', '.join(METHODS)})")
    return model, tokenizer


class _Blocks:
    """A torch-style dataset of equal-length token blocks (labels = inputs; the model shifts)."""

    def __init__(self, blocks: list[list[int]]) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def training_arguments(
    settings: TrainSettings, checkpoint_dir: Path, *, save: bool = True, log_every: int = 10
) -> Any:
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=settings.batch_size,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        seed=settings.seed,
        data_seed=settings.seed,
        save_strategy="steps" if save else "no",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=log_every,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_pin_memory=cuda,
        remove_unused_columns=False,
    )


def fine_tune(
    base_dir: Path,
    train_texts: list[str],
    out_dir: Path,
    checkpoint_dir: Path,
    settings: TrainSettings,
    progress: Progress | None = None,
    _reason: str | None = None,
) -> TrainResult:
    """Train, save the adapter (lora) or the whole model (full) and the tokenizer to
    ``out_dir``, and return what was done. Resumes from the newest usable checkpoint of the same
    run (``checkpoints``); raises ``checkpoints.Preempted`` when SIGTERM stopped it.

    Long on purpose: the Trainer's set-up, its progress callback and the save are one run."""
    from transformers import Trainer, TrainerCallback, default_data_collator, set_seed

    set_seed(settings.seed)
    cgroups.fit_torch_threads()  # a container's quota, not the node's cores
    model, tokenizer = load_for_training(base_dir, settings)
    block = block_size(tokenizer, model, settings.max_seq_length)
    blocks = pack(tokenize(tokenizer, train_texts), block)
    if not blocks:
        raise ModelError("the training split has no tokens")
    tokens_per_step = sum(len(b) for b in blocks[: settings.batch_size])
    started = time.perf_counter()
    # the loss every 10 steps, or often enough for a curve of some 8 points in a short run
    total = settings.max_steps or settings.epochs * math.ceil(len(blocks) / settings.batch_size)
    log_every = max(1, min(10, total // 8))

    curve: list[dict[str, float]] = []

    class _Report(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                curve.append({"step": state.global_step, "loss": round(float(logs["loss"]), 4)})
            if progress and logs and "loss" in logs:
                elapsed = time.perf_counter() - started
                progress(
                    {
                        "step": state.global_step,
                        "maxSteps": state.max_steps,
                        "loss": round(float(logs["loss"]), 4),
                        "tokensPerSecond": round(state.global_step * tokens_per_step / elapsed),
                    }
                )

    digest = checkpoints.fingerprint(base_dir, train_texts, settings.model_dump())
    point = checkpoints.resume_point(checkpoint_dir, digest)
    with checkpoints.StopOnSignal() as stop:
        trainer = Trainer(
            model=model,
            args=training_arguments(settings, checkpoint_dir, log_every=log_every),
            train_dataset=_Blocks(blocks),
            data_collator=default_data_collator,
            callbacks=[_Report(), stop.callback()],
        )
        try:
            resume = str(point.checkpoint) if point.checkpoint else None
            output = trainer.train(resume_from_checkpoint=resume)
        except Exception as err:  # whatever a bad checkpoint raises on load
            if point.checkpoint is None or stop.stepped or "out of memory" in str(err).lower():
                raise  # not the checkpoint's fault
            # the checkpoint would not load: drop it and run again from the one before it
            reason = checkpoints.discard(point, err)
            del trainer, model  # before the next attempt loads its own
            return fine_tune(base_dir, train_texts, out_dir, checkpoint_dir, settings, progress,
                             _reason=_join(point.restart_reason, reason))  # fmt: skip
    if stop.stopped_at is not None:
        raise checkpoints.Preempted(stop.stopped_at)
    seconds = time.perf_counter() - started
    steps = int(output.global_step)
    trained_steps = steps - point.step
    # every block is full of real tokens; count what this run computed on
    per_epoch = sum(len(b) for b in blocks)
    steps_per_epoch = max(1, math.ceil(len(blocks) / settings.batch_size))
    tokens = round(per_epoch * trained_steps / steps_per_epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {"method": settings.method, "settings": settings.model_dump(), "steps": steps}
    (out_dir / TRAIN_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))
    return TrainResult(
        steps=steps,
        tokens=tokens,
        seconds=seconds,
        train_loss=float(output.training_loss),
        resumed_from=point.checkpoint.name if point.checkpoint else None,
        resumed_from_step=point.step,
        restart_reason=_join(_reason, point.restart_reason),
        loss_curve=tuple(thin(curve)),
    )


def _join(*reasons: str | None) -> str | None:
    return "; ".join(r for r in reasons if r) or None


def load_trained(base_dir: Path, trained_dir: Path | None) -> tuple[Any, Any]:
    """The model to evaluate or serve: the base with the adapter, or a fully tuned model; the
    base alone when ``trained_dir`` is None."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if trained_dir is None:
        return AutoModelForCausalLM.from_pretrained(base_dir), AutoTokenizer.from_pretrained(
            base_dir
        )
    tokenizer = AutoTokenizer.from_pretrained(trained_dir)
    if (trained_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_dir)
        return PeftModel.from_pretrained(base, trained_dir), tokenizer
    return AutoModelForCausalLM.from_pretrained(trained_dir), tokenizer


def evaluate_texts(
    model: Any, tokenizer: Any, texts: list[str], max_seq_length: int
) -> dict[str, float]:
    """Mean next-token loss over every token of the texts, its perplexity, and next-token
    accuracy (the task metric for plain text)."""
    import torch

    cgroups.fit_torch_threads()
    model.eval()
    block = block_size(tokenizer, model, max_seq_length)
    total_loss = 0.0
    total_tokens = 0
    correct = 0
    with torch.no_grad():
        for seq in tokenize(tokenizer, texts):
            seq = seq[:block]
            if len(seq) < 2:
                continue
            ids = torch.tensor([seq])
            # a prompt-tuned model's logits start with its virtual tokens': the text's are last
            logits = model(input_ids=ids).logits[0, -len(seq) :][:-1]
            target = ids[0, 1:]
            total_loss += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
            total_tokens += int(target.numel())
    if total_tokens == 0:
        raise ModelError("the evaluation split has no tokens")
    loss = total_loss / total_tokens
    return {
        "loss": round(loss, 6),
        "perplexity": round(math.exp(min(loss, 50.0)), 4),
        "tokenAccuracy": round(correct / total_tokens, 6),
        "evalTokens": float(total_tokens),
    }


def merge_adapter(base_dir: Path, trained_dir: Path, target: Path) -> Path:
    """The base model with the adapter folded in, saved as a plain model."""
    model, tokenizer = load_trained(base_dir, trained_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
