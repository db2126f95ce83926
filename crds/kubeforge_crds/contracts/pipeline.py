"""The fine-tuning pipeline's parameters, derived from a FineTuneJob spec: the contract between
the operator (which builds Job commands and pipeline arguments from them) and
``kubeforge_pipelines`` (which runs them). Light: no torch, no kfp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubeforge_crds.finetunejob import FineTuneJobSpec


class PipelineParams(BaseModel):
    """Everything one run needs, with the names of the pipeline's parameters."""

    model_config = ConfigDict(extra="forbid")

    base_model_uri: str
    dataset_uri: str
    dataset_format: str = ""  # empty: inferred from the extension
    text_field: str = "text"
    eval_fraction: float = 0.1
    seed: int = 42
    settings: dict[str, Any] = Field(default_factory=dict)  # train.TrainSettings fields
    output_uri: str
    model_name: str
    merge_adapter: bool = False
    checkpoint_uri: str = ""  # file/pvc directory for checkpoints; empty: no resume
    run_info: dict[str, Any] = Field(default_factory=dict)  # backend, FineTuneJob, trigger
    card: dict[str, str] = Field(default_factory=dict)  # spec.output.card: purpose, owner, ...
    eval_prompts_uri: str = ""  # spec.evaluation.promptsUri; empty: no prompt set
    eval_max_tokens: int = 32

    @field_validator(
        "base_model_uri", "dataset_uri", "output_uri", "checkpoint_uri", "eval_prompts_uri"
    )
    @classmethod
    def _absolute(cls, value: str) -> str:
        """A plain path becomes an absolute file:// URI, so lineage says where things were."""
        return Path(value).resolve().as_uri() if value and "://" not in value else value

    def arguments(self) -> dict[str, Any]:
        """The pipeline's arguments (kfp parameters are these fields)."""
        return self.model_dump()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)


def params_from_spec(
    spec: FineTuneJobSpec,
    *,
    namespace: str,
    name: str,
    uid: str,
    backend: str,
    checkpoint_uri: str = "",
    trigger: dict[str, Any] | None = None,
) -> PipelineParams:
    hp = spec.hyperparameters
    lora = spec.method.lora
    settings: dict[str, Any] = {
        "method": spec.method.type,
        "epochs": hp.epochs,
        "learning_rate": hp.learning_rate,
        "batch_size": hp.batch_size,
        "max_steps": hp.max_steps,
        "max_seq_length": hp.max_seq_length,
        "seed": hp.seed,
        "save_steps": hp.save_steps,
    }
    if spec.method.type in ("lora", "dora", "qlora"):
        settings |= {
            "lora_r": lora.r if lora else 8,
            "lora_alpha": lora.alpha if lora else 16,
            "lora_dropout": lora.dropout if lora else 0.05,
            "target_modules": list(lora.target_modules) if lora else [],
        }
    if spec.method.type == "promptTuning":
        tuning = spec.method.prompt_tuning
        settings |= {
            "virtual_tokens": tuning.virtual_tokens if tuning else 20,
            "prompt_init_text": (tuning.init_text or "") if tuning else "",
        }
    run_info: dict[str, Any] = {
        "backend": backend,
        "fineTuneJob": {"namespace": namespace, "name": name, "uid": uid},
    }
    if trigger:
        run_info["trigger"] = trigger
    return PipelineParams(
        base_model_uri=spec.base_model.uri,
        dataset_uri=spec.dataset.uri,
        dataset_format=spec.dataset.format or "",
        text_field=spec.dataset.text_field,
        eval_fraction=hp.eval_fraction,
        seed=hp.seed,
        settings=settings,
        output_uri=spec.output.uri,
        model_name=spec.output.model_name or name,
        merge_adapter=spec.output.merge_adapter,
        checkpoint_uri=checkpoint_uri,
        run_info=run_info,
        card=spec.output.card.to_wire() if spec.output.card else {},
        eval_prompts_uri=spec.evaluation.prompts_uri if spec.evaluation else "",
        eval_max_tokens=spec.evaluation.max_tokens if spec.evaluation else 32,
    )
