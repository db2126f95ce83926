"""A tiny foundation model and a dataset that the project builds itself, so that the pipeline
really trains on a laptop or in CI with nothing downloaded at run time.

- :func:`support_tickets`: a seeded synthetic corpus of IT support tickets (JSONL rows with the
  text and a few structured fields that drift monitoring can use later);
- :func:`build_base_model`: a byte-level BPE tokenizer trained on a general corpus with the
  ``tokenizers`` library, and a randomly initialised 2-layer GPT-2 (about 0.1M parameters) saved
  in the Hugging Face format (safetensors), loadable with ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

PRODUCTS = ["laptop", "printer", "vpn", "email", "monitor", "phone", "wifi", "badge reader"]
SYMPTOMS = [
    "does not start",
    "shows an error",
    "is very slow",
    "keeps disconnecting",
    "makes a noise",
    "will not sync",
]
EVENTS = ["an update", "a power cut", "the move", "a password change", "a reboot", "lunch"]
FIXES = [
    "restart the device",
    "reinstall the driver",
    "reset the password",
    "replace the cable",
    "update the firmware",
    "open a hardware ticket",
]
TIERS = ["standard", "gold", "platinum"]
FILLER = "the a of to and in is it for on with as was at by an be this from".split()  # noqa: SIM905
SPECIAL_TOKEN = "<|endoftext|>"  # noqa: S105 - a tokenizer symbol, not a secret


def support_tickets(
    n: int, seed: int = 0, products: list[str] | None = None
) -> list[dict[str, Any]]:
    """``n`` tickets; ``products`` narrows (or shifts) the product mix, for drift scenarios."""
    rng = random.Random(seed)
    mix = products or PRODUCTS
    rows = []
    for i in range(n):
        product = rng.choice(mix)
        symptom = rng.choice(SYMPTOMS)
        fix = FIXES[(PRODUCTS.index(product) + SYMPTOMS.index(symptom)) % len(FIXES)]
        text = f"ticket: the {product} {symptom} after {rng.choice(EVENTS)}. resolution: {fix}."
        rows.append(
            {
                "id": i,
                "text": text,
                "product": product,
                "tier": rng.choice(TIERS),
                "priority": rng.randint(1, 4),
            }
        )
    return rows


def write_dataset(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def _general_corpus(seed: int) -> list[str]:
    """Text to train the tokenizer on: the ticket vocabulary and plain English filler."""
    rng = random.Random(seed)
    words = PRODUCTS + SYMPTOMS + EVENTS + FIXES + TIERS
    return [" ".join(rng.choice(words + FILLER) for _ in range(12)) for _ in range(2000)]


def build_base_model(
    target: Path,
    seed: int = 0,
    n_layer: int = 2,
    n_embd: int = 64,
    vocab_size: int = 512,
    pretrain_steps: int = 150,
) -> Path:
    """Write a tokenizer and a small GPT-2 to ``target``; returns ``target``. The model is
    pretrained (fully, with the pipeline's own fine-tune step) for ``pretrain_steps`` on the
    general corpus, so that it knows the words but not the tickets' structure.

    Long on purpose: the tokenizer, the model and its pretraining are one recipe, read in order."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_general_corpus(seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKEN,
        eos_token=SPECIAL_TOKEN,
        pad_token=SPECIAL_TOKEN,
        unk_token=SPECIAL_TOKEN,
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    if not pretrain_steps:
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        return target
    from kubeforge_pipelines.train import TrainSettings, fine_tune

    with tempfile.TemporaryDirectory(prefix="kubeforge-base-") as tmp:
        initial = Path(tmp) / "initial"
        model.save_pretrained(initial)
        tokenizer.save_pretrained(initial)
        settings = TrainSettings(
            method="full",
            max_steps=pretrain_steps,
            batch_size=16,
            max_seq_length=64,
            learning_rate=3e-3,
            seed=seed,
            save_steps=10**6,
        )
        fine_tune(initial, _general_corpus(seed + 1), target, Path(tmp) / "ckpt", settings)
    (target / "kubeforge-train.json").unlink(missing_ok=True)
    return target
