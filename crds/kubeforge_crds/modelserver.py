"""ModelServer: a model served through a KServe InferenceService, rolled out as a canary whose
steps are gated on Prometheus metrics and promoted or rolled back automatically."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from kubeforge_crds.base import (
    CelRule,
    Duration,
    KubeModel,
    LabelName,
    ObjectName,
    ResourceStatus,
    StatusPart,
    Timestamp,
    UriString,
    min_duration_rule,
    nested,
)
from kubeforge_crds.common import ComputeResources, ModelCard, QueueName, QueueStatus
from kubeforge_crds.health import PhaseHealth
from kubeforge_crds.kind import KindInfo, NameRule


class ModelRef(KubeModel):
    """What to serve: a storage URI, the output of a FineTuneJob, or the newest version of a
    model in this namespace's catalog."""

    uri: UriString | None = Field(default=None, description="Storage URI of the model.")
    fine_tune_job: ObjectName | None = Field(
        default=None, description="Name of a FineTuneJob whose registered model to serve."
    )
    model_name: LabelName | None = Field(
        default=None,
        description="Name of a model in this namespace's catalog (a FineTuneJob's "
        "spec.output.modelName): serve its newest version, the one registered last by a "
        "Succeeded FineTuneJob. A new version, e.g. from a DriftMonitor's retraining run, is "
        "rolled out as a canary when it is registered, with no change to this spec.",
    )

    cel_rules = (
        CelRule(
            rule="[has(self.uri), has(self.fineTuneJob), has(self.modelName)]"
            ".filter(x, x).size() == 1",
            message="set exactly one of uri, fineTuneJob or modelName",
            check=lambda s: [s.uri, s.fine_tune_job, s.model_name].count(None) == 2,
            field_path=".uri",
            reason="FieldValueRequired",
        ),
    )


class Adapter(ModelRef):
    """A LoRA adapter loaded on the ModelServer's base model (spec.model) and served
    beside it: a request that gives its name as `model` (OpenAI-compatible API) is answered by
    the base with this adapter. From a storage URI on a volume (pvc://), a FineTuneJob, or the
    newest version of a model in the catalog."""

    name: LabelName = Field(
        description="The name requests give as `model` to use this adapter; not the "
        "ModelServer's own name, which serves the base model.",
    )


class ModelFormat(StrEnum):
    TRANSFORMERS = "transformers"
    PEFT = "peft"
    SKLEARN = "sklearn"


class ServedAs(StrEnum):
    """The KServe resource a ModelServer is served as."""

    INFERENCE_SERVICE = "InferenceService"
    LLM_INFERENCE_SERVICE = "LLMInferenceService"


class FaultInjection(KubeModel):
    """Faults the built-in runtime injects into inference requests, for tests and demos: a canary
    with errors shows the automatic rollback. Part of the revision: changing it starts a rollout."""

    error_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of requests answered with HTTP 500."
    )
    extra_latency_seconds: float = Field(
        default=0.0, ge=0.0, le=60.0, description="Latency added to every inference request."
    )
    token_latency_seconds: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="Latency added before every token the OpenAI-compatible API generates.",
    )
    control: bool = Field(
        default=False,
        description="Let PUT /kubeforge/faults on a predictor pod change these faults while it "
        "serves (anyone who reaches the pod can): how a benchmark makes a canary go bad at a "
        "moment of its choosing. Never on a production model.",
    )


class Runtime(KubeModel):
    """How the model is served."""

    model_format: ModelFormat = Field(
        default=ModelFormat.TRANSFORMERS,
        description="Format of the model, for kubeforge's built-in runtime.",
    )
    serving_runtime: ObjectName | None = Field(
        default=None,
        description="Name of a KServe ServingRuntime or ClusterServingRuntime (e.g. a vLLM "
        "runtime) to use instead of the built-in runtime.",
    )
    fault_injection: FaultInjection | None = Field(
        default=None,
        description="Built-in runtime only: inject errors or latency (tests and demos).",
    )
    served_as: ServedAs = Field(
        default=ServedAs.INFERENCE_SERVICE,
        description="InferenceService: KServe's InferenceService (the built-in runtime or "
        "servingRuntime). LLMInferenceService: KServe's vLLM path (llm-d, "
        "serving.kserve.io/v1alpha2), a causal LM served by vLLM with spec.adapters as its "
        "LoRA modules and the canary as a second member of one routing group (vLLM needs a "
        "GPU: set resources.accelerator). Cannot change: create a new ModelServer.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self == oldSelf",
                    "message": "servedAs cannot change (the other kind would keep serving): "
                    "create a new ModelServer",
                }
            ]
        },
    )

    cel_rules = (
        CelRule(
            rule="!has(self.faultInjection) || !has(self.servingRuntime)",
            message="faultInjection works with the built-in runtime only; unset servingRuntime",
            check=lambda s: s.fault_injection is None or s.serving_runtime is None,
            field_path=".faultInjection",
        ),
        CelRule(
            rule="!has(self.servedAs) || self.servedAs != 'LLMInferenceService' || "
            "(self.modelFormat == 'transformers' && !has(self.servingRuntime) && "
            "!has(self.faultInjection))",
            message="an LLMInferenceService serves a causal LM with KServe's vLLM: modelFormat "
            "transformers, no servingRuntime, no faultInjection",
            check=lambda s: (
                s.served_as != ServedAs.LLM_INFERENCE_SERVICE
                or (
                    s.model_format == ModelFormat.TRANSFORMERS
                    and s.serving_runtime is None
                    and s.fault_injection is None
                )
            ),
            field_path=".servedAs",
        ),
    )


class Replicas(KubeModel):
    """Autoscaling bounds of the predictor."""

    min: int = Field(default=1, ge=0, le=100, description="Minimum replicas (0: scale to zero).")
    max: int = Field(default=1, ge=1, le=100, description="Maximum replicas.")

    cel_rules = (
        CelRule(
            rule="self.min <= self.max",
            message="min must not exceed max",
            check=lambda s: s.min <= s.max,
            field_path=".min",
        ),
    )


class MetricType(StrEnum):
    ERROR_RATE = "errorRate"
    LATENCY_P95 = "latencyP95"
    TIME_TO_FIRST_TOKEN_P95 = "timeToFirstTokenP95"  # noqa: S105 - a metric, not a secret
    INTER_TOKEN_LATENCY_P95 = "interTokenLatencyP95"  # noqa: S105
    GENERATION_THROUGHPUT = "generationThroughput"
    PROMQL = "promql"


AT_LEAST = (MetricType.GENERATION_THROUGHPUT,)  # higher is better: checked against min


PROMQL_PLACEHOLDERS = ("namespace", "name", "revision", "window", "adapters")
MAX_ADAPTERS = 8  # on one base model: each is a batch row's choice, in memory at once


def _unknown_placeholder(query: str) -> bool:
    for p in PROMQL_PLACEHOLDERS:
        query = query.replace("{{" + p + "}}", "")
    return "{{" in query


class AnalysisMetric(KubeModel):
    """A metric checked at every analysis interval of a rollout."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z][a-zA-Z0-9_-]*$",
        description="Name of the check, shown in status and Events.",
    )
    type: MetricType = Field(
        description="errorRate (share of 5xx responses), latencyP95 (seconds), "
        "timeToFirstTokenP95 and interTokenLatencyP95 (seconds, from the token metrics of "
        "OpenAI-compatible requests to a causal LM), generationThroughput (tokens generated per "
        "second a request runs, the same metrics; checked against min, as higher is better), or "
        "promql (a query template returning one number)."
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="PromQL template for type promql returning one number; {{namespace}}, "
        "{{name}}, {{revision}} (the canary's or the stable's), {{window}} (the rate range) and "
        "{{adapters}} (a regular expression of the adapters a rollout of adapters alone is "
        'judged on, ".*" otherwise: adapter=~"{{adapters}}") are substituted. Checked by '
        "Prometheus before a rollout starts.",
    )
    max: float | None = Field(
        default=None,
        ge=0,
        description="The check fails when the measured value exceeds this. With "
        "relativeToStable, the ratio canary/stable is compared instead. Required, except for "
        "generationThroughput.",
    )
    min: float | None = Field(
        default=None,
        ge=0,
        description="generationThroughput only: the check fails when the measured value (or "
        "the ratio canary/stable) is below this, e.g. 0.9 with relativeToStable.",
    )
    relative_to_stable: bool = Field(
        default=False, description="Compare the canary with the stable version, not absolutely."
    )

    cel_rules = (
        CelRule(
            rule="(self.type == 'promql') == has(self.query)",
            message="query is required for type promql and not allowed otherwise",
            check=lambda s: (s.type == MetricType.PROMQL) == (s.query is not None),
            field_path=".query",
        ),
        CelRule(
            rule="!has(self.query) || !self.query"
            + "".join(f".replace('{{{{{p}}}}}', '')" for p in PROMQL_PLACEHOLDERS)
            + ".contains('{{')",
            message="query may only use the placeholders {{namespace}}, {{name}}, {{revision}}, "
            "{{window}} and {{adapters}}",
            check=lambda s: s.query is None or not _unknown_placeholder(s.query),
            field_path=".query",
        ),
        CelRule(
            rule="(self.type == 'generationThroughput') == has(self.min)",
            message="min is required for type generationThroughput and not allowed otherwise",
            check=lambda s: (s.type in AT_LEAST) == (s.min is not None),
            field_path=".min",
            reason="FieldValueRequired",
        ),
        CelRule(
            rule="(self.type == 'generationThroughput') != has(self.max)",
            message="max is required, except for type generationThroughput (which takes min)",
            check=lambda s: (s.type in AT_LEAST) != (s.max is not None),
            field_path=".max",
            reason="FieldValueRequired",
        ),
        CelRule(
            rule="self.type != 'errorRate' || self.relativeToStable || !has(self.max) || "
            "self.max <= 1.0",
            message="an absolute errorRate threshold is a share between 0 and 1",
            check=lambda s: (
                s.type != MetricType.ERROR_RATE
                or s.relative_to_stable
                or s.max is None
                or s.max <= 1
            ),
            field_path=".max",
        ),
    )


class FailureAction(StrEnum):
    ROLLBACK = "rollback"
    HOLD = "hold"


def _default_metrics() -> list[AnalysisMetric]:
    return [
        AnalysisMetric(name="error-rate", type=MetricType.ERROR_RATE, max=0.05),
        AnalysisMetric(
            name="latency-p95", type=MetricType.LATENCY_P95, max=1.5, relative_to_stable=True
        ),
    ]


_MIN_INTERVAL = "10s"


class EvaluationMetric(StrEnum):
    ROUGE_L = "rougeL"


class PromptSet(KubeModel):
    """Where the prompts with their reference answers are: a ConfigMap in the ModelServer's
    namespace."""

    config_map: ObjectName = Field(description="Name of the ConfigMap.")
    key: str = Field(
        default="prompts.jsonl",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description='Its key holding JSON Lines, one {"prompt": ..., "reference": ...} object '
        "per line (1 to 200 lines; the answer to the prompt is compared with the reference).",
    )


class Evaluation(KubeModel):
    """The gate before any user traffic: the candidate answers a fixed prompt set through its
    own endpoint, and so does the stable version; each answer is scored against the prompt's
    reference answer. A candidate that scores worse than the stable version by more than the
    tolerance (or whose FineTuneJob's held-out loss is worse by more than maxLossIncrease) is
    not given traffic: the failure action is taken at once."""

    prompts: PromptSet = Field(description="The prompt set with reference answers.")
    metric: EvaluationMetric = Field(
        default=EvaluationMetric.ROUGE_L,
        description="rougeL: the ROUGE-L F-measure of each answer against its reference "
        "(Google's rouge-score), averaged over the prompts; between 0 and 1, higher is better.",
    )
    tolerance: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="How far the candidate's score may fall below the stable version's.",
    )
    max_loss_increase: float | None = Field(
        default=None,
        ge=0.0,
        le=10.0,
        description="When both versions come from FineTuneJobs: the candidate's held-out loss "
        "(its FineTuneJob's status.metrics.loss) may exceed the stable's by at most this share, "
        "e.g. 0.1 for 10%. Meaningful when both were evaluated on the same data.",
    )
    max_tokens: int = Field(
        default=32, ge=1, le=512, description="Tokens generated per answer (greedy)."
    )
    timeout: Duration = Field(
        default="10m",
        description="Time the evaluation may take from the rollout's start (the candidate's "
        "predictor starting included); past it, it has failed.",
    )
    model: LabelName | None = Field(
        default=None,
        description="The served name the prompts are sent to: one of spec.adapters' names (the "
        "adapter a rollout changes), or unset for the ModelServer's own model.",
    )

    cel_rules = (min_duration_rule("timeout", "timeout", "30s"),)


class RolloutPolicy(KubeModel):
    """How a new model version goes out."""

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary traffic percentages, strictly increasing and ending at 100.",
        json_schema_extra={"default": [10, 25, 50, 100]},
    )
    interval: Duration = Field(
        default="1m", description=f"Time between analyses. At least {_MIN_INTERVAL}."
    )
    metrics: list[AnalysisMetric] = Field(
        default_factory=_default_metrics,
        max_length=16,
        description="Checks that gate each step. Default: error rate at most 5% and p95 latency "
        "at most 1.5 times the stable version's.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "default": [m.to_wire() for m in _default_metrics()],
        },
    )
    failure_threshold: int = Field(
        default=2, ge=1, le=10, description="Failed analyses before the failure action is taken."
    )
    on_failure: FailureAction = Field(
        default=FailureAction.ROLLBACK,
        description="rollback sends all traffic back to the stable version; hold freezes the "
        "traffic split for a person to decide.",
    )
    evaluation: Evaluation | None = Field(
        default=None,
        description="Evaluate a new version before it gets any traffic (causal LMs, KServe's "
        "Standard mode): the canary starts at 0% and the steps begin only when it passes.",
    )

    cel_rules = (
        CelRule(
            rule="self.steps.isSorted() && self.steps.all(x, self.steps.exists_one(y, y == x))",
            message="steps must be strictly increasing",
            check=lambda s: all(a < b for a, b in zip(s.steps, s.steps[1:], strict=False)),
            field_path=".steps",
        ),
        CelRule(
            rule="self.steps[size(self.steps) - 1] == 100",
            message="the last step must be 100",
            check=lambda s: s.steps[-1] == 100,
            field_path=".steps",
        ),
        min_duration_rule("interval", "interval", _MIN_INTERVAL),
    )


class ModelServerSpec(KubeModel):
    """The desired serving endpoint."""

    model: ModelRef = Field(description="The model to serve.")
    runtime: Runtime = nested(Runtime, "How to serve it.")
    resources: ComputeResources = nested(
        ComputeResources,
        "CPU, memory and GPUs of each replica. The CPU is requested, not capped (a CPU limit "
        "throttles the model's start and its latency, which the canary's gates measure); "
        "memory is capped at the request.",
    )
    replicas: Replicas = nested(Replicas, "Autoscaling bounds.")
    queue_name: QueueName | None = Field(
        default=None,
        description="The Kueue LocalQueue of the team (or the hardware profile's queueName): "
        "each predictor pod carries the kueue.x-k8s.io/queue-name label and waits for quota.",
    )
    rollout: RolloutPolicy = nested(RolloutPolicy, "Canary rollout of new model versions.")
    card: ModelCard | None = Field(
        default=None,
        description="The model card of what this server serves, shown in the model map: for a "
        "model served by URI, the only one; for a FineTuneJob's model, in place of its "
        "spec.output.card. Changing it rolls nothing out.",
    )
    adapters: list[Adapter] = Field(
        default_factory=list,
        max_length=MAX_ADAPTERS,
        description="LoRA adapters (not DoRA, which peft cannot batch by adapter) served on "
        "spec.model (a base model, modelFormat "
        "transformers, the built-in runtime), each under its own name. A new version of one "
        "(a new URI, a FineTuneJob registering a newer version) is a new revision, rolled out "
        "as a canary; the others are served unchanged by both predictors.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    cel_rules = (
        CelRule(
            rule="!has(self.rollout.evaluation) || !has(self.runtime.servedAs) || "
            "self.runtime.servedAs != 'LLMInferenceService'",
            message="evaluation before traffic is not done for an LLMInferenceService yet (its "
            "Job calls the predictors' own Services); remove rollout.evaluation",
            check=lambda s: (
                s.rollout.evaluation is None
                or s.runtime.served_as != ServedAs.LLM_INFERENCE_SERVICE
            ),
            field_path=".rollout.evaluation",
        ),
        CelRule(
            rule="!has(self.adapters) || size(self.adapters) == 0 || "
            "(self.runtime.modelFormat == 'transformers' && !has(self.runtime.servingRuntime))",
            message="adapters are loaded on a base model by kubeforge's runtime: modelFormat "
            "transformers, no servingRuntime",
            check=lambda s: (
                not s.adapters
                or (
                    s.runtime.model_format == ModelFormat.TRANSFORMERS
                    and s.runtime.serving_runtime is None
                )
            ),
            field_path=".adapters",
        ),
        CelRule(
            rule="!has(self.rollout.evaluation) || self.runtime.modelFormat != 'sklearn'",
            message="evaluation sends prompts to a causal LM's OpenAI-compatible API: modelFormat "
            "transformers or peft, or a servingRuntime that serves one",
            check=lambda s: (
                s.rollout.evaluation is None or s.runtime.model_format != ModelFormat.SKLEARN
            ),
            field_path=".rollout.evaluation",
        ),
        CelRule(
            rule="!has(self.rollout.evaluation) || !has(self.rollout.evaluation.model) || "
            "(has(self.adapters) && "
            "self.adapters.exists(a, a.name == self.rollout.evaluation.model))",
            message="evaluation.model names one of spec.adapters (unset: the ModelServer's model)",
            check=lambda s: (
                s.rollout.evaluation is None
                or s.rollout.evaluation.model is None
                or any(a.name == s.rollout.evaluation.model for a in s.adapters)
            ),
            field_path=".rollout.evaluation.model",
        ),
    )


class ModelServerPhase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"  # no version serves yet, its predictor waits for Kueue (status.queue)
    READY = "Ready"
    PROGRESSING = "Progressing"
    ROLLED_BACK = "RolledBack"
    HELD = "Held"
    FAILED = "Failed"


class Revision(StatusPart):
    """A served model version: what the predictor of that version is built from."""

    revision: str = Field(
        max_length=63,
        description="Revision identifier (a digest of what is served); the runtime labels its "
        "metrics with it.",
    )
    uri: str = Field(max_length=2048, description="Storage URI of the model.")
    traffic_percent: int = Field(
        ge=0,
        le=100,
        description="Share of traffic the current rollout step gives it; a canary receives it "
        "once ready (CanaryReady=True), and until then the stable version answers everything.",
    )
    model_format: ModelFormat = Field(
        default=ModelFormat.TRANSFORMERS, description="Format, for the built-in runtime."
    )
    serving_runtime: str | None = Field(
        default=None, max_length=253, description="KServe ServingRuntime, if not built in."
    )
    fault_injection: FaultInjection | None = Field(default=None, description="Injected faults.")
    fine_tune_job: str | None = Field(
        default=None, max_length=253, description="The FineTuneJob that produced the model."
    )
    base_model: str | None = Field(
        default=None,
        max_length=2048,
        description="Base model URI of the FineTuneJob that produced the model (what a PEFT "
        "adapter is loaded on); a base on a volume (pvc://) is mounted read-only beside the model.",
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="The adapters loaded on the model: name -> storage URI of the version.",
    )


class RolloutProgress(StatusPart):
    """Where the current rollout is; with it in status a restarted operator carries on."""

    revision: str = Field(max_length=63, description="The canary's revision.")
    step: int = Field(ge=0, description="Index into spec.rollout.steps of the canary's traffic.")
    failures: int = Field(ge=0, description="Failed or inconclusive analyses so far.")
    evaluating: bool = Field(
        default=False,
        description="The canary is at 0% until its evaluation (status.evaluation) passes.",
    )
    start_time: Timestamp = Field(description="When the rollout started.")
    last_analysis_time: Timestamp | None = Field(
        default=None, description="When the canary was last analysed."
    )
    next_analysis_time: Timestamp | None = Field(
        default=None, description="When it is analysed next."
    )
    stable_baseline: dict[str, float] = Field(
        default_factory=dict,
        description="The stable version's last measured value per relative metric: what the "
        "canary is compared with once the stable version gets no traffic and no full-load value "
        "was measured.",
    )
    stable_full_load: dict[str, float] = Field(
        default_factory=dict,
        description="The stable version's value per relative metric over the interval before "
        "the rollout started, when it served all the traffic: what the canary is compared with "
        "at the 100% step, under the same load.",
    )
    judged_adapters: list[LabelName] | None = Field(
        default=None,
        max_length=MAX_ADAPTERS,
        description="The adapters whose requests alone the gates judge, decided when the "
        "rollout started (empty: every request, e.g. when the stable version's runtime does "
        "not label its requests with the adapter).",
    )


class RolloutDecision(StatusPart):
    """One analysis outcome."""

    time: Timestamp = Field(description="When the decision was made.")
    step: int = Field(ge=0, description="Index of the step in spec.rollout.steps.")
    action: str = Field(
        max_length=32, description="start, advance, hold, rollback, promote or cancel."
    )
    revision: str | None = Field(default=None, max_length=63, description="The canary.")
    traffic_split: str | None = Field(
        default=None, max_length=16, description="stable/canary percentages after the decision."
    )
    reason: str = Field(max_length=1024, description="Why.")
    measurements: dict[str, float] = Field(
        default_factory=dict, description="Measured value per metric name."
    )


class EvaluationPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PASSED = "Passed"
    REGRESSED = "Regressed"
    FAILED = "Failed"


class EvaluationResult(StatusPart):
    """The evaluation of a candidate before traffic: what was measured and what was decided."""

    revision: str = Field(max_length=63, description="The candidate's revision.")
    phase: EvaluationPhase = Field(
        description="Pending (the candidate's predictor is starting), Running, Passed, "
        "Regressed or Failed."
    )
    job: str = Field(max_length=253, description="The Job that sends the prompts.")
    metric: str = Field(default="rougeL", max_length=32, description="The score's metric.")
    candidate: float | None = Field(default=None, description="The candidate's mean score.")
    stable: float | None = Field(default=None, description="The stable version's mean score.")
    candidate_loss: float | None = Field(
        default=None, description="The candidate's held-out loss (its FineTuneJob's)."
    )
    stable_loss: float | None = Field(
        default=None, description="The stable version's held-out loss (its FineTuneJob's)."
    )
    prompts: int | None = Field(default=None, ge=0, description="Prompts answered by each.")
    message: str = Field(default="", max_length=1024, description="The outcome in words.")
    start_time: Timestamp | None = Field(default=None, description="When the Job was created.")
    completion_time: Timestamp | None = Field(default=None, description="When it was judged.")


class ModelServerStatus(ResourceStatus):
    """The observed state of the endpoint and its rollout."""

    phase: ModelServerPhase | None = Field(default=None, description="Lifecycle phase.")
    url: str | None = Field(default=None, description="Inference endpoint.")
    stable: Revision | None = Field(default=None, description="The stable version.")
    canary: Revision | None = Field(default=None, description="The canary, during a rollout.")
    rollout: RolloutProgress | None = Field(default=None, description="The rollout under way.")
    rolled_back: Revision | None = Field(
        default=None,
        description="The last revision rolled back; it is not rolled out again until the spec "
        "names something else.",
    )
    traffic_split: str | None = Field(
        default=None,
        description="Traffic split of the current rollout step as stable/canary percentages, "
        "e.g. 90/10; the canary gets its share once ready (CanaryReady=True).",
    )
    gpus: int | None = Field(default=None, ge=0, description="GPUs held by the replicas now.")
    gpu_product: str | None = Field(
        default=None,
        max_length=128,
        description="The GPU product asked for (the nvidia.com/gpu.product node label its "
        "pods select), when one was: what GPU-hours are priced by.",
    )
    decisions: list[RolloutDecision] = Field(
        default_factory=list, max_length=100, description="The latest rollout decisions."
    )
    evaluation: EvaluationResult | None = Field(
        default=None, description="The last candidate's evaluation before traffic."
    )
    inference_service: str | None = Field(
        default=None, max_length=253, description="Name of the KServe InferenceService."
    )
    queue: QueueStatus | None = Field(
        default=None,
        description="Set while a predictor pod waits for quota in its Kueue queue (phase Queued "
        "when no version serves yet).",
    )


MODELSERVER = KindInfo(
    kind="ModelServer",
    plural="modelservers",
    short_names=("ms",),
    spec_model=ModelServerSpec,
    status_model=ModelServerStatus,
    description="A KServe endpoint with metric-gated canary rollout and automatic rollback.",
    printer_columns=(
        {
            "name": "Traffic",
            "type": "string",
            "jsonPath": ".status.trafficSplit",
            "description": "stable/canary traffic percentages",
        },
        {"name": "Canary", "type": "integer", "jsonPath": ".status.canary.trafficPercent"},
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        {"name": "Product", "type": "string", "jsonPath": ".status.gpuProduct", "priority": 1},
        {"name": "Owner", "type": "string", "jsonPath": ".spec.card.owner", "priority": 1},
    ),
    name_rule=NameRule(
        45,
        "so that KServe's names for the InferenceService's children "
        "(<name>-predictor, its canary and its Service) fit 63",
        dns1035=True,
    ),
    health=(
        PhaseHealth("Ready", "Healthy", "Serving", needs_ready=True),
        PhaseHealth("Held", "Suspended", "Canary held for a decision"),
        PhaseHealth("RolledBack", "Degraded", "RolledBack"),
        PhaseHealth("Failed", "Degraded", "Failed"),
        PhaseHealth("Queued", "Suspended", "Queued for quota"),
    ),
)
