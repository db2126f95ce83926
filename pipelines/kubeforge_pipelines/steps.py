"""The four steps as plain functions on local paths. The kfp components (``components``) call
them, and so does the Job backend's container (``run_all``): the same code whichever way a
FineTuneJob runs."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from kubeforge_crds.contracts.evaluation import PromptCase, PromptSetError, parse_prompts
from kubeforge_crds.contracts.pipeline import PipelineParams
from kubeforge_pipelines import data, scoring, storage

Progress = Callable[[dict[str, Any]], None]
ERROR_FILE_ENV = "KUBEFORGE_ERROR_FILE"


def report_error(step: str, err: BaseException) -> None:
    """Leave the reason a step failed where the runner can find it (kfp's local runner only
    says which task failed): ``$KUBEFORGE_ERROR_FILE``, if set."""
    target = os.environ.get(ERROR_FILE_ENV)
    if target:
        Path(target).write_text(json.dumps({"step": step, "error": f"{type(err).__name__}: {err}"}))


F = TypeVar("F", bound=Callable[..., Any])


def reported(step: str) -> Callable[[F], F]:
    def wrap(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as err:
                report_error(step, err)
                raise

        return cast(F, run)

    return wrap


@reported("prepare")
def prepare(
    dataset_uri: str,
    dataset_format: str,
    text_field: str,
    eval_fraction: float,
    seed: int,
    train_path: Path,
    eval_path: Path,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubeforge-prepare-") as tmp:
        source = storage.fetch_file(dataset_uri, Path(tmp))
        prepared = data.prepare(source, dataset_format or None, text_field, eval_fraction, seed)
    data.write_jsonl(prepared.train, train_path)
    data.write_jsonl(prepared.eval, eval_path)
    return {
        "uri": dataset_uri,
        "sha256": prepared.digest,
        "rows": prepared.rows,
        "trainRows": len(prepared.train),
        "evalRows": len(prepared.eval),
    }


@reported("fine-tune")
def fine_tune(
    base_model_uri: str,
    settings: dict[str, Any],
    train_path: Path,
    model_path: Path,
    checkpoint_uri: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    from kubeforge_pipelines import train

    with tempfile.TemporaryDirectory(prefix="kubeforge-train-") as tmp:
        base = storage.fetch_dir(base_model_uri, Path(tmp))
        ckpt = storage.parse_uri(checkpoint_uri).local if checkpoint_uri else Path(tmp) / "ckpt"
        result = train.fine_tune(
            base,
            data.read_jsonl_texts(train_path),
            model_path,
            ckpt,
            train.TrainSettings(**settings),
            progress=progress,
        )
    return {
        "steps": result.steps,
        "tokens": result.tokens,
        "seconds": round(result.seconds, 3),
        "tokensPerSecond": round(result.tokens_per_second, 1),
        "trainLoss": round(result.train_loss, 6),
        "resumedFrom": result.resumed_from,
        "resumedFromStep": result.resumed_from_step,
        "restartReason": result.restart_reason,
        "lossCurve": list(result.loss_curve) or None,
    }


@reported("evaluate")
def evaluate(
    base_model_uri: str,
    model_path: Path,
    eval_path: Path,
    max_seq_length: int,
    prompts_uri: str = "",
    max_tokens: int = 32,
) -> dict[str, Any]:
    """Metrics of the tuned model and, for comparison, of the base model on the same split;
    with a prompt set, each one's ROUGE-L on it too."""
    from kubeforge_pipelines import train

    texts = data.read_jsonl_texts(eval_path)
    with tempfile.TemporaryDirectory(prefix="kubeforge-eval-") as tmp:
        base = storage.fetch_dir(base_model_uri, Path(tmp))
        cases = prompt_set(prompts_uri, Path(tmp)) if prompts_uri else []
        results = []
        for trained in (None, model_path):
            model, tokenizer = train.load_trained(base, trained)
            metrics = train.evaluate_texts(model, tokenizer, texts, max_seq_length)
            if cases:
                answers = scoring.greedy_answers(
                    model, tokenizer, [c.prompt for c in cases], max_tokens
                )
                scores = scoring.rouge_l(answers, [c.reference for c in cases])
                metrics["rougeL"] = scoring.mean(scores)
            results.append(metrics)
    return {"metrics": results[1], "metricsBefore": results[0]}


def prompt_set(uri: str, workdir: Path) -> list[PromptCase]:
    """The evaluation prompt set at ``uri``; a problem names spec.evaluation.promptsUri."""
    try:
        return parse_prompts(storage.fetch_file(uri, workdir).read_text(encoding="utf-8"))
    except (storage.StorageError, PromptSetError, UnicodeDecodeError) as err:
        raise PromptSetError(f"spec.evaluation.promptsUri: {err}") from err


_COUNTS = ("rows", "trainRows", "evalRows")


@reported("register")
def register(
    params: PipelineParams,
    model_path: Path,
    dataset: dict[str, Any],
    evaluation: dict[str, Any],
    run_id: str,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``training``: the fine-tune step's record, kept in the lineage's run (where it resumed
    after a preemption, and why it started over)."""
    from kubeforge_pipelines import register as reg
    from kubeforge_pipelines import train
    from kubeforge_pipelines.methods import LOW_RANK

    method = str(params.settings.get("method", "lora"))
    # kfp hands dict parameters over as protobuf Structs: counts arrive as floats
    dataset = {k: int(v) if k in _COUNTS else v for k, v in dataset.items()}
    with tempfile.TemporaryDirectory(prefix="kubeforge-merge-") as tmp:
        merged = None
        if params.merge_adapter and method in LOW_RANK:
            base = storage.fetch_dir(params.base_model_uri, Path(tmp))
            merged = train.merge_adapter(base, model_path, Path(tmp) / "merged")
        return reg.register(
            trained_dir=model_path,
            output_uri=params.output_uri,
            merged_dir=merged,
            model_dir_name="model" if method == "full" else "adapter",
            lineage_fields={
                "model_name": params.model_name,
                "base_model": params.base_model_uri,
                "dataset": dataset,
                "method": method,
                "hyperparameters": params.settings,
                "metrics": evaluation["metrics"],
                "metrics_before": evaluation["metricsBefore"],
                "run": {**params.run_info, "id": run_id}
                | ({"training": training} if training else {}),
                "card": params.card,
            },
        )


@reported("validate")
def validate(params: PipelineParams) -> dict[str, Any]:
    """Check the dataset and the model/method without training (and without a GPU): what the
    Job backend runs before it asks for GPUs. Returns the dataset summary and model type."""
    from kubeforge_pipelines import train

    with tempfile.TemporaryDirectory(prefix="kubeforge-validate-") as tmp:
        work = Path(tmp)
        dataset = prepare(
            params.dataset_uri,
            params.dataset_format,
            params.text_field,
            params.eval_fraction,
            params.seed,
            work / "train.jsonl",
            work / "eval.jsonl",
        )
        if params.eval_prompts_uri:  # before the model: a bad file is said in a second
            prompt_set(params.eval_prompts_uri, work)
        base = storage.fetch_dir(params.base_model_uri, work)
        config = train.check_method(base, train.TrainSettings(**params.settings))
    return {"dataset": dataset, "modelType": config.get("model_type")}


def is_primary() -> bool:
    """Rank 0 of a distributed (torchrun) run, or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


def run_all(
    params: PipelineParams, workdir: Path, run_id: str, progress: Progress | None = None
) -> dict[str, Any]:
    """prepare → fine-tune → evaluate → register in this process; returns the lineage."""
    say = progress or (lambda _event: None)
    train_path, eval_path = workdir / "data" / "train.jsonl", workdir / "data" / "eval.jsonl"
    model_path = workdir / "model"
    say({"step": "prepare"})
    dataset = prepare(
        params.dataset_uri,
        params.dataset_format,
        params.text_field,
        params.eval_fraction,
        params.seed,
        train_path,
        eval_path,
    )
    say({"step": "fine-tune", "dataset": dataset})
    training = fine_tune(
        params.base_model_uri,
        params.settings,
        train_path,
        model_path,
        params.checkpoint_uri,
        progress=lambda e: say({"step": "fine-tune", **e}),
    )
    if not is_primary():
        return {"training": training}  # rank 0 evaluates and registers
    say({"step": "evaluate", "training": training})
    evaluation = evaluate(
        params.base_model_uri,
        model_path,
        eval_path,
        int(params.settings.get("max_seq_length", 512)),
        params.eval_prompts_uri,
        params.eval_max_tokens,
    )
    say({"step": "register", **evaluation})
    lineage = register(params, model_path, dataset, evaluation, run_id, training)
    lineage["training"] = training
    return lineage


# what status.training shows of a run: how far it went, where it resumed and why not, and its
# training loss (at most train.LOSS_CURVE_POINTS points: some 900 bytes of the message's 4 KiB)
TRAINING_SUMMARY = ("steps", "resumedFromStep", "restartReason", "lossCurve")


def summary(lineage: dict[str, Any]) -> str:
    """What the Job backend's container writes as its termination message (at most 4 KiB):
    the operator copies it into the FineTuneJob's status, as it does the local backend's full
    lineage (the base model's loss included, so that both report what training gained)."""
    if "model" not in lineage:  # a worker of a distributed run
        return json.dumps({"training": lineage.get("training", {})})[:4096]
    small = {
        "model": lineage["model"],
        "metrics": {k: v for k, v in lineage["metrics"].items() if k != "evalTokens"},
        "datasetDigest": lineage["dataset"]["sha256"],
    }
    before = lineage.get("metricsBefore") or {}
    if "loss" in before:
        small["metricsBefore"] = {"loss": before["loss"]}
    training = lineage.get("training") or {}
    small["training"] = {k: training[k] for k in TRAINING_SUMMARY if training.get(k) is not None}
    return json.dumps(small, sort_keys=True)[:4096]
