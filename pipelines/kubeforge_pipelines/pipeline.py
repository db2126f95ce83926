"""The kfp v2 fine-tuning pipeline: prepare → fine-tune → evaluate → register, typed components
over the functions of :mod:`kubeforge_pipelines.steps`.

The components are kfp "lightweight" Python components whose image is the kubeforge image (it
has this package installed), so their bodies only import and call ``steps``. The compiled IR is
committed at ``kubeforge_pipelines/compiled/finetune.yaml`` (package data);
``python -m kubeforge_pipelines compile --check`` fails when it is stale.

No ``from __future__ import annotations`` here: kfp reads the real annotation objects.
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

# The image the components run in on a cluster: the kubeforge image, with this package and its
# ML extras installed (the same image the Job backend runs).
IMAGE = "ghcr.io/kubeforge/kubeforge:0.1.0"
# inside the package, so that every install of it (the images' too) carries the IR it submits
COMPILED = Path(__file__).resolve().parent / "compiled" / "finetune.yaml"
PIPELINE_NAME = "kubeforge-finetune"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare(
    dataset_uri: str,
    dataset_format: str,
    text_field: str,
    eval_fraction: float,
    seed: int,
    train_data: Output[Dataset],
    eval_data: Output[Dataset],
) -> dict:  # type: ignore[type-arg]
    """Read and validate the dataset, split it and record its SHA-256."""
    from pathlib import Path

    from kubeforge_pipelines import steps

    info = steps.prepare(
        dataset_uri,
        dataset_format,
        text_field,
        eval_fraction,
        seed,
        Path(train_data.path),
        Path(eval_data.path),
    )
    train_data.metadata.update({"sha256": info["sha256"], "rows": info["trainRows"]})
    eval_data.metadata.update({"sha256": info["sha256"], "rows": info["evalRows"]})
    return info


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fine_tune(
    base_model_uri: str,
    settings: dict,  # type: ignore[type-arg]
    checkpoint_uri: str,
    train_data: Input[Dataset],
    model: Output[Model],
) -> dict:  # type: ignore[type-arg]
    """LoRA or full fine-tuning with checkpoints; resumes from the newest checkpoint."""
    import json
    from pathlib import Path

    from kubeforge_pipelines import steps

    info = steps.fine_tune(
        base_model_uri,
        settings,
        Path(train_data.path),
        Path(model.path),
        checkpoint_uri,
        progress=lambda e: print(json.dumps(e), flush=True),
    )
    # kfp passes a dict output on as a protobuf Struct, which has no place for a None
    info = {k: v for k, v in info.items() if v is not None}
    model.metadata.update({"method": settings.get("method", "lora"), **info})
    return info


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    base_model_uri: str,
    max_seq_length: int,
    model: Input[Model],
    eval_data: Input[Dataset],
    metrics: Output[Metrics],
    eval_prompts_uri: str = "",
    eval_max_tokens: int = 32,
) -> dict:  # type: ignore[type-arg]
    """Loss, perplexity and next-token accuracy on the held-out split, before and after (and
    ROUGE-L on the prompt set, if one is given)."""
    from pathlib import Path

    from kubeforge_pipelines import steps

    result = steps.evaluate(
        base_model_uri,
        Path(model.path),
        Path(eval_data.path),
        max_seq_length,
        eval_prompts_uri,
        eval_max_tokens,
    )
    for key, value in result["metrics"].items():
        metrics.log_metric(key, value)
    for key, value in result["metricsBefore"].items():
        metrics.log_metric(f"base_{key}", value)
    return result


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    params_json: str,
    run_id: str,
    dataset: dict,  # type: ignore[type-arg]
    evaluation: dict,  # type: ignore[type-arg]
    training: dict,  # type: ignore[type-arg]
    model: Input[Model],
) -> str:
    """Publish the version (weights, model card, lineage) under the output URI; returns the
    version's lineage as JSON, with the fine-tune step's record (steps, where it resumed, the
    loss curve) as the Job backend's run has it."""
    import json
    from pathlib import Path

    from kubeforge_crds.contracts.pipeline import PipelineParams
    from kubeforge_pipelines import steps

    params = PipelineParams.model_validate_json(params_json)
    lineage = steps.register(params, Path(model.path), dataset, evaluation, run_id, training)
    lineage["training"] = training
    print(json.dumps({"registered": lineage["model"]}), flush=True)
    return json.dumps(lineage, sort_keys=True)


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="kubeforge fine-tuning: prepare, fine-tune (LoRA or full), evaluate, register.",
)
def finetune_pipeline(
    base_model_uri: str,
    dataset_uri: str,
    output_uri: str,
    model_name: str,
    settings: dict,  # type: ignore[type-arg]
    params_json: str,
    dataset_format: str = "",
    text_field: str = "text",
    eval_fraction: float = 0.1,
    seed: int = 42,
    max_seq_length: int = 512,
    checkpoint_uri: str = "",
    eval_prompts_uri: str = "",
    eval_max_tokens: int = 32,
) -> str:
    prepared = prepare(
        dataset_uri=dataset_uri,
        dataset_format=dataset_format,
        text_field=text_field,
        eval_fraction=eval_fraction,
        seed=seed,
    )
    tuned = fine_tune(
        base_model_uri=base_model_uri,
        settings=settings,
        checkpoint_uri=checkpoint_uri,
        train_data=prepared.outputs["train_data"],
    )
    evaluated = evaluate(
        base_model_uri=base_model_uri,
        max_seq_length=max_seq_length,
        model=tuned.outputs["model"],
        eval_data=prepared.outputs["eval_data"],
        eval_prompts_uri=eval_prompts_uri,
        eval_max_tokens=eval_max_tokens,
    )
    registered = register(
        params_json=params_json,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        dataset=prepared.outputs["Output"],
        evaluation=evaluated.outputs["Output"],
        training=tuned.outputs["Output"],
        model=tuned.outputs["model"],
    )
    return registered.output  # type: ignore[no-any-return]


def pipeline_arguments(params_json: str) -> dict[str, object]:
    """The pipeline's arguments for one run, from PipelineParams JSON."""
    from kubeforge_crds.contracts.pipeline import PipelineParams

    p = PipelineParams.model_validate_json(params_json)
    return {
        "base_model_uri": p.base_model_uri,
        "dataset_uri": p.dataset_uri,
        "output_uri": p.output_uri,
        "model_name": p.model_name,
        "settings": p.settings,
        "params_json": params_json,
        "dataset_format": p.dataset_format,
        "text_field": p.text_field,
        "eval_fraction": p.eval_fraction,
        "seed": p.seed,
        "max_seq_length": int(p.settings.get("max_seq_length", 512)),
        "checkpoint_uri": p.checkpoint_uri,
        "eval_prompts_uri": p.eval_prompts_uri,
        "eval_max_tokens": p.eval_max_tokens,
    }


def compile_pipeline(target: Path = COMPILED) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(finetune_pipeline, str(target))
    return target
