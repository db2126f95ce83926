"""FineTuneJob: LoRA (or full) fine-tuning of a foundation model, as a Kubeflow pipeline run, a
GPU Job on the cluster, or a local process, with evaluation and lineage."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from kubeforge_crds.base import (
    CelRule,
    KubeModel,
    LabelName,
    ResourceStatus,
    StatusModel,
    StatusPart,
    Timestamp,
    UriString,
    nested,
)
from kubeforge_crds.common import ComputeResources, EnvVar, ModelCard, QueueName, QueueStatus
from kubeforge_crds.health import PhaseHealth
from kubeforge_crds.kind import KindInfo, NameRule, ShorterName


class ModelSource(KubeModel):
    """The foundation model to start from."""

    uri: UriString = Field(
        description="Where the base model lives: s3://, gs://, pvc://, file:// or hf:// (resolved "
        "from a mirror or cache; nothing is downloaded from a hub at run time)."
    )


class DatasetFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


class Dataset(KubeModel):
    """The training data."""

    uri: UriString = Field(description="Where the dataset lives: s3://, pvc:// or file://.")
    format: DatasetFormat | None = Field(
        default=None, description="File format. Inferred from the URI's extension when omitted."
    )
    text_field: str = Field(
        default="text",
        min_length=1,
        max_length=128,
        description="Column that holds the training text.",
    )
    data_connection: LabelName | None = Field(
        default=None,
        description="Name of a Secret with S3-style credentials to read the dataset with.",
    )


class MethodType(StrEnum):
    LORA = "lora"
    DORA = "dora"
    QLORA = "qlora"
    PROMPT_TUNING = "promptTuning"
    FULL = "full"


# low-rank adapters: they take the lora settings and can be merged into the base
ADAPTER_METHODS = (MethodType.LORA, MethodType.DORA, MethodType.QLORA)


class LoraConfig(KubeModel):
    """LoRA adapter settings (peft.LoraConfig)."""

    r: int = Field(default=8, ge=1, le=256, description="Rank of the update matrices.")
    alpha: int = Field(default=16, ge=1, le=1024, description="LoRA scaling factor.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA layers.")
    target_modules: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list,
        max_length=32,
        description="Module names to adapt, e.g. [q_proj, v_proj]. Empty: the model's defaults.",
    )


class PromptTuningConfig(KubeModel):
    """Prompt tuning (peft.PromptTuningConfig): learnt virtual tokens put before every prompt,
    the base model frozen; the cheapest way to adapt a model."""

    virtual_tokens: int = Field(
        default=20, ge=1, le=512, description="How many virtual tokens are learnt."
    )
    init_text: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Text the virtual tokens start from (e.g. a task description); random "
        "when unset.",
    )


class Method(KubeModel):
    """How to fine-tune."""

    type: MethodType = Field(
        default=MethodType.LORA,
        description="lora trains a low-rank adapter; dora a weight-decomposed one (DoRA, often "
        "better at the same rank, slower to train); qlora a LoRA adapter on the base model "
        "loaded in 4 bits (NF4, bitsandbytes: a quarter of the memory for the frozen weights; "
        "fast on a GPU, slow on CPU); promptTuning learns virtual tokens before the prompt; "
        "full trains all weights.",
    )
    lora: LoraConfig | None = Field(
        default=None,
        description="LoRA settings; only with type lora, dora or qlora (defaults apply if "
        "omitted).",
    )
    prompt_tuning: PromptTuningConfig | None = Field(
        default=None,
        description="Prompt-tuning settings; only with type promptTuning (defaults apply if "
        "omitted).",
    )

    cel_rules = (
        CelRule(
            rule="self.type in ['lora', 'dora', 'qlora'] || !has(self.lora)",
            message="lora settings are only allowed when type is lora, dora or qlora",
            check=lambda s: s.type in ADAPTER_METHODS or s.lora is None,
            field_path=".lora",
        ),
        CelRule(
            rule="self.type == 'promptTuning' || !has(self.promptTuning)",
            message="promptTuning settings are only allowed when type is promptTuning",
            check=lambda s: s.type == MethodType.PROMPT_TUNING or s.prompt_tuning is None,
            field_path=".promptTuning",
        ),
    )


class Hyperparameters(KubeModel):
    """Training hyperparameters."""

    epochs: int = Field(default=1, ge=1, le=100, description="Passes over the training split.")
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Examples per device step.")
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Stop after this many steps (overrides epochs).",
    )
    max_seq_length: int = Field(
        default=512, ge=8, le=131072, description="Tokens per example after truncation."
    )
    eval_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="Share of the dataset held out for evaluation."
    )
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Random seed.")
    save_steps: int = Field(
        default=50,
        ge=1,
        le=10_000_000,
        description="Save a checkpoint every this many steps (backend job, output on a volume). "
        "A preempted run also saves one when it is stopped, so this bounds only what a crash "
        "loses.",
    )


class TrainingResources(ComputeResources):
    """Compute for each training pod, and how many pods (nodes)."""

    nodes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Number of nodes; more than 1 runs torchrun across "
        "pods as a Kubeflow TrainJob.",
    )


class Backend(StrEnum):
    KFP = "kfp"
    JOB = "job"
    LOCAL = "local"


class ModelOutput(KubeModel):
    """Where the fine-tuned model version goes."""

    uri: UriString = Field(
        description="Where to write the model version (adapter, model card, lineage)."
    )
    model_name: LabelName | None = Field(
        default=None,
        description="Name of the model in the catalog. Defaults to the FineTuneJob's name.",
    )
    merge_adapter: bool = Field(
        default=False, description="Also write the base model merged with the adapter."
    )
    card: ModelCard | None = Field(
        default=None,
        description="The model card's declared part (purpose, intended use, limitations, "
        "owner, licence), written into each version's README.md and shown in the model map.",
    )


class PromptEvaluation(KubeModel):
    """A prompt set with reference answers that the tuned model and its base answer after
    training (greedy), scored with ROUGE-L: the score a ModelServer's evaluation before traffic
    gives the version too."""

    prompts_uri: UriString = Field(
        description='JSON Lines file, one {"prompt": ..., "reference": ...} object per line (1 to '
        "200), the format of a ModelServer's spec.rollout.evaluation prompt set: file://, "
        "pvc://claim/path or s3://. Checked by the validation step, before any training.",
    )
    max_tokens: int = Field(
        default=32, ge=1, le=512, description="Tokens generated per answer (greedy)."
    )


class FineTuneJobSpec(KubeModel):
    """The desired fine-tuning run."""

    base_model: ModelSource = Field(description="The foundation model to tune.")
    dataset: Dataset = Field(description="The training data.")
    method: Method = nested(Method, "Fine-tuning method.")
    hyperparameters: Hyperparameters = nested(Hyperparameters, "Training hyperparameters.")
    resources: TrainingResources = nested(TrainingResources, "Compute for the training pods.")
    backend: Backend = Field(
        default=Backend.JOB,
        description="Where to run: kfp (a Kubeflow Pipelines run), job (a Kubernetes Job, or a "
        "Kubeflow TrainJob for several nodes) or local (a process beside the operator, for "
        "development).",
    )
    queue_name: QueueName | None = None
    priority_class: LabelName | None = Field(
        default=None,
        description="Kueue WorkloadPriorityClass of the run. Under quota a higher-priority "
        "workload preempts a lower-priority one: the run saves a checkpoint and resumes from it "
        "when admitted again (status.training.resumedFromStep, status.preemptions).",
    )
    output: ModelOutput = Field(description="Where the model version is written.")
    evaluation: PromptEvaluation | None = Field(
        default=None,
        description="Also score the tuned model (and its base) on a prompt set: "
        "status.metrics.rougeL (and the base's in the version's lineage).",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Environment variables for the training containers (e.g. HF_HOME); the "
        "validation step does not get them.",
    )

    cel_rules = (
        CelRule(
            rule="self.resources.nodes == 1 || self.backend == 'job'",
            message="more than one node needs backend job",
            check=lambda s: s.resources.nodes == 1 or s.backend == Backend.JOB,
            field_path=".resources.nodes",
        ),
        CelRule(
            rule="self.backend != 'local' || !has(self.resources.accelerator)",
            message="backend local runs on the operator's machine and cannot request GPUs",
            check=lambda s: s.backend != Backend.LOCAL or s.resources.accelerator is None,
            field_path=".resources.accelerator",
        ),
        CelRule(
            rule="!has(self.output.mergeAdapter) || !self.output.mergeAdapter || "
            "!has(self.method) || !has(self.method.type) "
            "|| self.method.type in ['lora', 'dora', 'qlora']",
            message="mergeAdapter merges a low-rank adapter: method type lora, dora or qlora",
            check=lambda s: not s.output.merge_adapter or s.method.type in ADAPTER_METHODS,
            field_path=".output.mergeAdapter",
        ),
    )


class FineTuneJobPhase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ModelVersion(StatusPart):
    """The model version a successful run registered."""

    name: str = Field(max_length=253, description="Model name in the catalog.")
    version: str = Field(max_length=64, description="Version of the model.")
    uri: str = Field(max_length=2048, description="Where the version was written.")


class Lineage(StatusPart):
    """Where the model version came from."""

    base_model: str = Field(max_length=2048, description="URI of the base model.")
    dataset_uri: str = Field(max_length=2048, description="URI of the training data.")
    dataset_digest: str | None = Field(default=None, description="SHA-256 of the dataset.")
    run_id: str | None = Field(default=None, description="The run that trained it.")
    uri: str | None = Field(
        default=None, max_length=2048, description="The full lineage record (lineage.json)."
    )
    trigger: str | None = Field(
        default=None,
        max_length=1024,
        description="What started this run, e.g. the DriftMonitor that detected drift.",
    )


class LossPoint(StatusModel):
    """The training loss the trainer logged at a step."""

    step: int = Field(ge=0, description="The optimizer step.")
    loss: float = Field(description="The training loss logged at it.")


class TrainingRecord(StatusModel):
    """How the run trained: how far, where it resumed after a preemption, its loss curve."""

    steps: int | None = Field(default=None, ge=0, description="Optimizer steps in all.")
    resumed_from_step: int | None = Field(
        default=None,
        ge=0,
        description="The checkpoint's step the last attempt resumed from (0: from the start).",
    )
    restart_reason: str | None = Field(
        default=None,
        description="Why checkpoints that were there were not resumed (another spec, cut short "
        "while saving, would not load).",
    )
    loss_curve: list[LossPoint] | None = Field(
        default=None,
        max_length=64,
        description="The training loss by step as the trainer logged it (every 10 steps), at "
        "most 32 points evenly spread; of the attempt that finished (after a preemption, from "
        "the step it resumed at).",
    )


class FineTuneJobStatus(ResourceStatus):
    """The observed state of the fine-tuning run."""

    phase: FineTuneJobPhase | None = Field(default=None, description="Lifecycle phase.")
    run_id: str | None = Field(default=None, description="Pipeline run or Job that ran it.")
    start_time: Timestamp | None = Field(default=None, description="When training started.")
    completion_time: Timestamp | None = Field(default=None, description="When it finished.")
    gpus: int | None = Field(default=None, ge=0, description="GPUs held by the run now.")
    gpu_product: str | None = Field(
        default=None,
        max_length=128,
        description="The GPU product asked for (the nvidia.com/gpu.product node label its "
        "pods select), when one was: what GPU-hours are priced by.",
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Evaluation metrics, e.g. loss and perplexity."
    )
    model: ModelVersion | None = Field(default=None, description="The registered model version.")
    dataset_digest: str | None = Field(default=None, description="SHA-256 of the dataset.")
    lineage: Lineage | None = Field(default=None, description="Where the model version came from.")
    queue: QueueStatus | None = Field(
        default=None, description="Set while the run waits for quota in its Kueue queue."
    )
    preemptions: int | None = Field(
        default=None,
        ge=0,
        description="Times Kueue preempted the run for a higher-priority workload; each resumes "
        "from its last checkpoint.",
    )
    training: TrainingRecord | None = Field(default=None, description="How the run trained.")


FINETUNEJOB = KindInfo(
    kind="FineTuneJob",
    plural="finetunejobs",
    short_names=("ftj",),
    spec_model=FineTuneJobSpec,
    status_model=FineTuneJobStatus,
    description="A fine-tuning run of a foundation model, with evaluation and lineage.",
    # a run is a record: what ran must stay what the object says (as with a Job's template)
    immutable_spec=True,
    printer_columns=(
        {"name": "Backend", "type": "string", "jsonPath": ".spec.backend"},
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
        {"name": "Model", "type": "string", "jsonPath": ".status.model.version", "priority": 1},
        {"name": "Owner", "type": "string", "jsonPath": ".spec.output.card.owner", "priority": 1},
    ),
    name_rule=NameRule(
        48,
        "so that the run's Jobs (<name>-validate, <name>-train) and the Services of their pods "
        "fit 63",
        dns1035=True,
        shorter_when=(
            ShorterName(
                "has(self.spec.resources) && has(self.spec.resources.nodes) "
                "&& self.spec.resources.nodes > 1",
                lambda obj: (
                    int(((obj.get("spec") or {}).get("resources") or {}).get("nodes") or 1) > 1
                ),
                40,
                "when spec.resources.nodes > 1, so that the TrainJob's pod names "
                "(<name>-train-node-0-<rank>-<suffix>) fit 63; choose a shorter name",
            ),
        ),
    ),
    health=(
        PhaseHealth(
            "Succeeded",
            "Healthy",
            "Model version registered",
            plain=True,
            lua_message='(st.model ~= nil and st.model.name ~= nil) and ("Model " .. st.model.name'
            ' .. " version " .. tostring(st.model.version) .. " registered") or nil',
        ),
        PhaseHealth("Failed", "Degraded", "Failed"),
        PhaseHealth("Queued", "Suspended", "Queued for quota"),
    ),
)
