"""The fine-tuning methods of a FineTuneJob (``spec.method.type``) as peft sets them up on a
loaded base model: LoRA and DoRA adapters, QLoRA (LoRA on a 4-bit base), prompt tuning; and the
error the steps raise for a model or method that cannot work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METHODS = ("lora", "dora", "qlora", "promptTuning", "full")  # the FineTuneJob's spec.method.type
LOW_RANK = ("lora", "dora", "qlora")


class ModelError(ValueError):
    """A base model or method setting that cannot work, with the reason."""


def check_target_modules(model: Any, settings: Any) -> None:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in settings.target_modules if m not in names]
    if missing:
        linear = sorted(
            n.rsplit(".", 1)[-1]
            for n, mod in model.named_modules()
            if type(mod).__name__ in {"Linear", "Conv1D"}
        )
        raise ModelError(
            f"LoRA target modules {missing} are not in the model "
            f"(its linear layers: {', '.join(sorted(set(linear)))})"
        )


def lora_model(model: Any, settings: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, settings)
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules or None,
        task_type="CAUSAL_LM",
        use_dora=settings.method == "dora",
    )
    return get_peft_model(model, config)


def prompt_tuned_model(model: Any, base_dir: Path, settings: Any) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    text = settings.prompt_init_text
    config = PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=settings.virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=text or None,
        tokenizer_name_or_path=str(base_dir) if text else None,
    )
    return get_peft_model(model, config)


def require_bitsandbytes() -> None:
    """QLoRA's 4-bit base needs bitsandbytes (the trainer image has it; it quantises on a CUDA
    GPU, and since 0.45 on CPU too)."""
    try:
        import bitsandbytes  # noqa: F401  # type: ignore[import-untyped]
    except ImportError as err:
        raise ModelError(
            "method qlora loads the base model in 4 bits with bitsandbytes, which is not "
            f"installed where this step runs ({err}); use the kubeforge trainer image, or "
            "method lora"
        ) from None


def quantized_base(base_dir: Path) -> Any:
    """The base model in 4 bits for QLoRA: NF4 with double quantisation, computing in bf16 on a
    GPU that has it, else fp32 (the QLoRA paper's recipe); layer norms in fp32 and the input
    gradients enabled for the adapter (peft's prepare_model_for_kbit_training)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    require_bitsandbytes()
    cuda = torch.cuda.is_available()
    compute = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    quantization = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, quantization_config=quantization, device_map={"": 0 if cuda else "cpu"}
    )
    # gradient checkpointing is QLoRA's other memory saving: on a GPU, where memory is what
    # limits the model size; on CPU it only costs time
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=cuda)  # type: ignore[no-untyped-call]
