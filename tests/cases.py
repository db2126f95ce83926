"""Shared test data: the examples, and a table of invalid objects per kind.

The same table runs against the pydantic models (tests/unit) and against the real apiserver
(tests/integration), so the CRD schema and the Python validation cannot drift apart.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
# the same kinds on the local cluster's real node (what `make demo` applies)
LOCAL_EXAMPLES = sorted((REPO / "examples" / "local").glob("*.yaml"))
# the platform admin's examples: cluster-scoped (a Team), outside the demo's namespace
PLATFORM_EXAMPLES = sorted((REPO / "examples" / "platform").glob("*.yaml"))


def load_examples(paths: list[Path] = EXAMPLES) -> list[dict[str, Any]]:
    """The kubeforge objects among the examples (not the Secrets, volumes and Jobs they use)."""
    docs = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
    return [d for d in docs if str(d.get("apiVersion", "")).startswith("kubeforge.io/")]


def example(kind: str, name: str | None = None) -> dict[str, Any]:
    """The example of ``kind`` named ``name``; unnamed, the one in ``examples/<kind>.yaml``
    where there is such a file (the invalid cases start from it), else the first."""
    own = REPO / "examples" / f"{kind.lower()}.yaml"
    paths = [own] if name is None and own.exists() else EXAMPLES + PLATFORM_EXAMPLES
    return next(
        e
        for e in load_examples(paths)
        if e["kind"] == kind and name in (None, e["metadata"]["name"])
    )


_DELETE = object()


@dataclass(frozen=True)
class Invalid:
    kind: str
    id: str
    changes: dict[str, Any]  # dotted spec path -> new value (or DELETE)
    field: str  # the field the rejection must name
    message: str = ""  # a fragment both the apiserver and pydantic print, if any
    name: str | None = None  # the object's name, when the name is what is wrong

    def spec(self) -> dict[str, Any]:
        spec = copy.deepcopy(example(self.kind)["spec"])
        for path, value in self.changes.items():
            *parents, leaf = path.split(".")
            node = spec
            for p in parents:
                node = node.setdefault(p, {})
            if value is _DELETE:
                node.pop(leaf, None)
            else:
                node[leaf] = value
        return spec

    def object(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "kubeforge.io/v1alpha1",
            "kind": self.kind,
            "metadata": {"name": self.name or name},
            "spec": self.spec(),
        }


DELETE = _DELETE

INVALID: list[Invalid] = [
    # Workbench
    Invalid(
        "Workbench",
        "image-and-catalog",
        {"catalogImage": "jupyter"},
        "spec.image",
        "exactly one of image or catalogImage",
    ),
    Invalid(
        "Workbench",
        "no-image",
        {"image": DELETE},
        "spec.image",
        "exactly one of image or catalogImage",
    ),
    Invalid("Workbench", "cpu-not-quantity", {"resources.cpu": "two"}, "spec.resources.cpu"),
    Invalid(
        "Workbench", "memory-not-quantity", {"resources.memory": "4 GB"}, "spec.resources.memory"
    ),
    Invalid(
        "Workbench",
        "too-many-gpus",
        {"resources.accelerator": {"count": 65}},
        "spec.resources.accelerator.count",
    ),
    Invalid(
        "Workbench",
        "profile-and-product",
        {
            "resources.accelerator": {
                "product": "NVIDIA-A100-SXM4-80GB",
                "count": 1,
                "profile": "a100",
            }
        },
        "spec.resources.accelerator.profile",
        "not both",
    ),
    Invalid(
        "Workbench",
        "product-without-count",
        {"resources.accelerator": {"product": "NVIDIA-A100-SXM4-80GB"}},
        "spec.resources.accelerator.product",
        "product needs a count",
    ),
    Invalid(
        "Workbench",
        "idle-timeout-too-short",
        {"culling.idleTimeout": "30s"},
        "spec.culling.idleTimeout",
        "at least 1m",
    ),
    Invalid(
        "Workbench",
        "idle-timeout-not-duration",
        {"culling.idleTimeout": "soon"},
        "spec.culling.idleTimeout",
    ),
    Invalid("Workbench", "env-name", {"env": [{"name": "1BAD", "value": "x"}]}, "spec.env[0].name"),
    Invalid(
        "Workbench",
        "secret-name",
        {"dataConnections": [{"name": "s3", "secretName": "Bad_"}]},
        "spec.dataConnections[0].secretName",
    ),
    Invalid("Workbench", "unknown-field", {"gpu": 1}, "spec.gpu"),
    Invalid("Workbench", "stopped-not-bool", {"stopped": "yes"}, "spec.stopped"),
    Invalid("Workbench", "queue-name", {"queueName": "Team Queue"}, "spec.queueName"),
    Invalid(
        "Workbench",
        "negative-gpus",
        {"resources.accelerator": {"count": -1}},
        "spec.resources.accelerator.count",
    ),
    Invalid("Workbench", "storage-size", {"storage.size": "lots"}, "spec.storage.size"),
    # FineTuneJob
    Invalid("FineTuneJob", "no-base-model", {"baseModel": DELETE}, "spec.baseModel"),
    Invalid("FineTuneJob", "no-output", {"output": DELETE}, "spec.output"),
    Invalid(
        "FineTuneJob", "base-model-scheme", {"baseModel.uri": "ftp://x/y"}, "spec.baseModel.uri"
    ),
    Invalid("FineTuneJob", "dataset-format", {"dataset.format": "xlsx"}, "spec.dataset.format"),
    Invalid("FineTuneJob", "lora-rank-zero", {"method.lora.r": 0}, "spec.method.lora.r"),
    Invalid(
        "FineTuneJob", "lora-dropout-one", {"method.lora.dropout": 1.0}, "spec.method.lora.dropout"
    ),
    Invalid(
        "FineTuneJob",
        "lora-with-full",
        {"method.type": "full"},
        "spec.method.lora",
        "lora settings are only allowed when type is lora, dora or qlora",
    ),
    Invalid(
        "FineTuneJob",
        "prompt-tuning-settings-with-lora",
        {"method.promptTuning": {"virtualTokens": 8}},
        "spec.method.promptTuning",
        "promptTuning settings are only allowed when type is promptTuning",
    ),
    Invalid(
        "FineTuneJob",
        "prompt-tuning-too-many-tokens",
        {"method": {"type": "promptTuning", "promptTuning": {"virtualTokens": 513}}},
        "spec.method.promptTuning.virtualTokens",
    ),
    Invalid(
        "FineTuneJob",
        "merge-a-prompt",
        {"method": {"type": "promptTuning"}, "output.mergeAdapter": True},
        "spec.output.mergeAdapter",
        "mergeAdapter merges a low-rank adapter",
    ),
    Invalid(
        "FineTuneJob",
        "learning-rate-zero",
        {"hyperparameters.learningRate": 0},
        "spec.hyperparameters.learningRate",
    ),
    Invalid(
        "FineTuneJob",
        "epochs-too-many",
        {"hyperparameters.epochs": 1000},
        "spec.hyperparameters.epochs",
    ),
    Invalid(
        "FineTuneJob",
        "eval-fraction",
        {"hyperparameters.evalFraction": 0.9},
        "spec.hyperparameters.evalFraction",
    ),
    Invalid("FineTuneJob", "backend", {"backend": "slurm"}, "spec.backend"),
    Invalid(
        "FineTuneJob",
        "multinode-kfp",
        {"resources.nodes": 4, "backend": "kfp"},
        "spec.resources.nodes",
        "more than one node needs backend job",
    ),
    Invalid(
        "FineTuneJob",
        "local-with-gpu",
        {"backend": "local"},
        "spec.resources.accelerator",
        "backend local",
    ),
    # ModelServer
    Invalid(
        "ModelServer",
        "throughput-without-min",
        {"rollout.metrics": [{"name": "speed", "type": "generationThroughput", "max": 1}]},
        "spec.rollout.metrics[0].min",
        "min is required for type generationThroughput",
    ),
    Invalid(
        "ModelServer",
        "latency-with-min",
        {"rollout.metrics": [{"name": "lat", "type": "latencyP95", "min": 1}]},
        "spec.rollout.metrics[0].min",
        "min is required for type generationThroughput and not allowed otherwise",
    ),
    Invalid(
        "ModelServer",
        "card-purpose-too-long",
        {"card": {"purpose": "x" * 513}},
        "spec.card.purpose",
    ),
    Invalid(
        "ModelServer",
        "card-licence-with-markup",
        {"card": {"license": "<b>MIT</b>"}},
        "spec.card.license",
    ),
    Invalid(
        "FineTuneJob",
        "card-limitations-too-long",
        {"output.card": {"limitations": "x" * 2049}},
        "spec.output.card.limitations",
    ),
    Invalid(
        "ModelServer",
        "uri-and-job",
        {"model.uri": "s3://m/v1"},
        "spec.model.uri",
        "exactly one of uri, fineTuneJob or modelName",
    ),
    Invalid(
        "ModelServer",
        "no-model-source",
        {"model.fineTuneJob": DELETE},
        "spec.model.uri",
        "exactly one of uri, fineTuneJob or modelName",
    ),
    Invalid(
        "ModelServer",
        "job-and-model-name",
        {"model.modelName": "support-bot"},
        "spec.model.uri",
        "exactly one of uri, fineTuneJob or modelName",
    ),
    Invalid(
        "ModelServer",
        "model-name-not-a-label",
        {"model.fineTuneJob": DELETE, "model.modelName": "Support_Bot"},
        "spec.model.modelName",
    ),
    Invalid("ModelServer", "format", {"runtime.modelFormat": "onnx"}, "spec.runtime.modelFormat"),
    Invalid(
        "ModelServer",
        "llmisvc-with-serving-runtime",
        {"runtime.servedAs": "LLMInferenceService", "runtime.servingRuntime": "vllm"},
        "spec.runtime.servedAs",
        "modelFormat transformers, no servingRuntime",
    ),
    Invalid(
        "ModelServer",
        "llmisvc-sklearn",
        {"runtime.servedAs": "LLMInferenceService", "runtime.modelFormat": "sklearn"},
        "spec.runtime.servedAs",
        "serves a causal LM",
    ),
    Invalid(
        "ModelServer",
        "llmisvc-evaluation",
        {
            "runtime.servedAs": "LLMInferenceService",
            "runtime.modelFormat": "transformers",
            "rollout.evaluation": {"prompts": {"configMap": "p"}},
        },
        "spec.rollout.evaluation",
        "not done for an LLMInferenceService",
    ),
    Invalid(
        "ModelServer", "served-as", {"runtime.servedAs": "Deployment"}, "spec.runtime.servedAs"
    ),
    Invalid(
        "ModelServer",
        "adapters-on-an-adapter",
        {"runtime.modelFormat": "peft", "adapters": [{"name": "a", "uri": "pvc://m/a"}]},
        "spec.adapters",
        "adapters are loaded on a base model",
    ),
    Invalid(
        "ModelServer",
        "adapter-without-source",
        {"runtime.modelFormat": "transformers", "adapters": [{"name": "a"}]},
        "spec.adapters[0].uri",
        "exactly one of uri, fineTuneJob or modelName",
    ),
    Invalid(
        "ModelServer",
        "adapter-name-not-a-label",
        {"runtime.modelFormat": "transformers", "adapters": [{"name": "A_b", "uri": "pvc://m/a"}]},
        "spec.adapters[0].name",
    ),
    Invalid(
        "ModelServer",
        "evaluation-model-not-an-adapter",
        {
            "runtime.modelFormat": "transformers",
            "adapters": [{"name": "faq", "uri": "pvc://m/faq"}],
            "rollout.evaluation": {"prompts": {"configMap": "p"}, "model": "tickets"},
        },
        "spec.rollout.evaluation.model",
        "evaluation.model names one of spec.adapters",
    ),
    Invalid(
        "ModelServer",
        "evaluation-of-sklearn",
        {"runtime.modelFormat": "sklearn", "rollout.evaluation": {"prompts": {"configMap": "p"}}},
        "spec.rollout.evaluation",
        "evaluation sends prompts to a causal LM",
    ),
    Invalid(
        "ModelServer",
        "evaluation-tolerance-above-1",
        {"rollout.evaluation": {"prompts": {"configMap": "p"}, "tolerance": 1.5}},
        "spec.rollout.evaluation.tolerance",
    ),
    Invalid(
        "ModelServer",
        "evaluation-timeout-too-short",
        {"rollout.evaluation": {"prompts": {"configMap": "p"}, "timeout": "5s"}},
        "spec.rollout.evaluation.timeout",
    ),
    Invalid(
        "ModelServer",
        "evaluation-without-prompts",
        {"rollout.evaluation": {"tolerance": 0.1}},
        "spec.rollout.evaluation.prompts",
    ),
    Invalid(
        "ModelServer",
        "replicas-min-max",
        {"replicas": {"min": 3, "max": 2}},
        "spec.replicas.min",
        "min must not exceed max",
    ),
    Invalid(
        "ModelServer",
        "steps-not-increasing",
        {"rollout.steps": [50, 25, 100]},
        "spec.rollout.steps",
        "strictly increasing",
    ),
    Invalid(
        "ModelServer",
        "steps-repeat",
        {"rollout.steps": [10, 10, 100]},
        "spec.rollout.steps",
        "strictly increasing",
    ),
    Invalid(
        "ModelServer",
        "last-step",
        {"rollout.steps": [10, 50]},
        "spec.rollout.steps",
        "the last step must be 100",
    ),
    Invalid(
        "ModelServer", "step-out-of-range", {"rollout.steps": [10, 200]}, "spec.rollout.steps[1]"
    ),
    Invalid(
        "ModelServer",
        "interval-short",
        {"rollout.interval": "1s"},
        "spec.rollout.interval",
        "at least 10s",
    ),
    Invalid(
        "ModelServer",
        "promql-without-query",
        {"rollout.metrics": [{"name": "q", "type": "promql", "max": 1}]},
        "spec.rollout.metrics[0].query",
        "query is required for type promql",
    ),
    Invalid(
        "ModelServer",
        "negative-threshold",
        {"rollout.metrics": [{"name": "e", "type": "errorRate", "max": -1}]},
        "spec.rollout.metrics[0].max",
    ),
    Invalid("ModelServer", "on-failure", {"rollout.onFailure": "panic"}, "spec.rollout.onFailure"),
    Invalid(
        "ModelServer",
        "failure-threshold",
        {"rollout.failureThreshold": 0},
        "spec.rollout.failureThreshold",
    ),
    Invalid(
        "ModelServer",
        "error-rate-not-a-share",
        {"rollout.metrics": [{"name": "e", "type": "errorRate", "max": 5}]},
        "spec.rollout.metrics[0].max",
        "a share between 0 and 1",
    ),
    Invalid(
        "ModelServer",
        "promql-unknown-placeholder",
        {
            "rollout.metrics": [
                {"name": "q", "type": "promql", "query": "sum(up{job='{{job}}'})", "max": 1}
            ]
        },
        "spec.rollout.metrics[0].query",
        "may only use the placeholders",
    ),
    Invalid(
        "ModelServer",
        "query-on-builtin-metric",
        {"rollout.metrics": [{"name": "e", "type": "errorRate", "query": "up", "max": 0.1}]},
        "spec.rollout.metrics[0].query",
        "not allowed otherwise",
    ),
    Invalid(
        "ModelServer",
        "faults-with-serving-runtime",
        {"runtime": {"servingRuntime": "vllm", "faultInjection": {"errorRate": 0.5}}},
        "spec.runtime.faultInjection",
        "built-in runtime only",
    ),
    Invalid(
        "ModelServer",
        "fault-rate-over-one",
        {"runtime.faultInjection": {"errorRate": 1.5}},
        "spec.runtime.faultInjection.errorRate",
    ),
    # DriftMonitor
    Invalid("DriftMonitor", "no-target", {"target": DELETE}, "spec.target"),
    Invalid(
        "DriftMonitor",
        "target-name",
        {"target.modelServer": "Support Bot"},
        "spec.target.modelServer",
    ),
    Invalid(
        "DriftMonitor",
        "uri-without-source",
        {"reference.uri": "s3://ref/data.csv"},
        "spec.reference.uri",
        "uri is required for source uri",
    ),
    Invalid(
        "DriftMonitor",
        "source-uri-missing",
        {"reference.source": "uri"},
        "spec.reference.uri",
        "uri is required for source uri",
    ),
    Invalid(
        "DriftMonitor",
        "unknown-metric",
        {"metrics": [{"name": "entropy", "threshold": 1}]},
        "spec.metrics[0].name",
    ),
    Invalid(
        "DriftMonitor",
        "negative-threshold",
        {"metrics": [{"name": "psi", "threshold": -0.1}]},
        "spec.metrics[0].threshold",
    ),
    Invalid(
        "DriftMonitor",
        "ks-threshold-over-one",
        {"metrics": [{"name": "ks", "threshold": 2}]},
        "spec.metrics[0].threshold",
        "this metric lies between 0 and 1",
    ),
    Invalid(
        "DriftMonitor",
        "chisquare-threshold-over-one",
        {"metrics": [{"name": "psi", "threshold": 3}, {"name": "chiSquare", "threshold": 5}]},
        "spec.metrics[1].threshold",
        "this metric lies between 0 and 1",
    ),
    Invalid("DriftMonitor", "no-metrics", {"metrics": []}, "spec.metrics"),
    Invalid(
        "DriftMonitor",
        "live-data-without-export",
        {"actions.retrain.includeLiveData": True},
        "spec.actions.retrain.exportUri",
        "includeLiveData needs exportUri",
    ),
    Invalid(
        "DriftMonitor",
        "live-data-to-s3",
        {"actions.retrain.includeLiveData": True, "actions.retrain.exportUri": "s3://b/x"},
        "spec.actions.retrain.exportUri",
        "a pvc:// or file:// location",
    ),
    Invalid(
        "DriftMonitor",
        "bias-metric-without-bias",
        {"metrics": [{"name": "spd", "threshold": 0.1}]},
        "spec.bias",
        "metrics spd and dir need bias settings",
    ),
    Invalid("DriftMonitor", "window-too-small", {"window.size": 5}, "spec.window.size"),
    Invalid(
        "DriftMonitor",
        "ground-truth-metric-of-the-other-task",
        {
            "groundTruth": {
                "task": "regression",
                "metrics": [
                    {"name": "mae", "threshold": 2},
                    {"name": "accuracy", "threshold": 0.9},
                ],
            }
        },
        "spec.groundTruth.metrics",
        "accuracy, precision, recall and f1 are for task classification",
    ),
    Invalid(
        "DriftMonitor",
        "ground-truth-accuracy-over-one",
        {"groundTruth": {"task": "classification", "metrics": [{"name": "f1", "threshold": 80}]}},
        "spec.groundTruth.metrics[0].threshold",
        "lie between 0 and 1",
    ),
    Invalid(
        "DriftMonitor",
        "ground-truth-min-labels-over-window",
        {
            "groundTruth": {
                "task": "classification",
                "metrics": [{"name": "accuracy", "threshold": 0.9}],
                "window": 100,
                "minLabels": 200,
            }
        },
        "spec.groundTruth.minLabels",
        "minLabels cannot exceed window",
    ),
    Invalid(
        "DriftMonitor",
        "ground-truth-positive-class-for-regression",
        {
            "groundTruth": {
                "task": "regression",
                "metrics": [{"name": "rmse", "threshold": 3}],
                "positiveClass": "1",
            }
        },
        "spec.groundTruth.positiveClass",
        "positiveClass is for task classification",
    ),
    Invalid(
        "DriftMonitor",
        "text-feature-without-embedding-drift",
        {"features": [{"name": "prompt", "type": "text"}]},
        "spec.metrics",
        "a text feature is compared by metric embeddingDrift",
    ),
    Invalid(
        "DriftMonitor",
        "two-answer-features",
        {
            "features": [
                {"name": "prompt", "type": "categorical"},
                {"name": "reply", "type": "categorical", "source": "response"},
                {"name": "score", "type": "numeric", "source": "response"},
            ]
        },
        "spec.features",
        "at most one feature has source response",
    ),
    Invalid(
        "DriftMonitor",
        "only-an-answer-feature",
        {"features": [{"name": "reply", "type": "categorical", "source": "response"}]},
        "spec.features",
        "list at least one feature with source request",
    ),
    Invalid(
        "DriftMonitor",
        "embedding-drift-at-chance",
        {"metrics": [{"name": "embeddingDrift", "threshold": 0.5}]},
        "spec.metrics[0].threshold",
        "its threshold must be above 0.5",
    ),
    Invalid(
        "DriftMonitor",
        "anomaly-rate-below-the-ordinary-share",
        {"anomalies": {"quantile": 0.9, "rateThreshold": 0.05}},
        "spec.anomalies.rateThreshold",
        "rateThreshold must be above 1 - quantile",
    ),
    Invalid(
        "DriftMonitor",
        "ground-truth-without-task",
        {"groundTruth": {"metrics": [{"name": "accuracy", "threshold": 0.9}]}},
        "spec.groundTruth.task",
    ),
    Invalid(
        "DriftMonitor",
        "severity",
        {"actions.alert.severity": "page"},
        "spec.actions.alert.severity",
    ),
    Invalid(
        "DriftMonitor",
        "cooldown",
        {"actions.retrain.cooldown": "tomorrow"},
        "spec.actions.retrain.cooldown",
    ),
    Invalid(
        "DriftMonitor",
        "feature-type",
        {"features": [{"name": "age", "type": "ordinal"}]},
        "spec.features[0].type",
    ),
    # Names that are valid for the custom resource but not for the children made from it, and
    # quantities that make no sense (the same rules in CEL and in Python)
    Invalid("Workbench", "name-too-long", {}, "metadata.name", "at most 52", name="n" * 53),
    Invalid("Workbench", "name-digit-first", {}, "metadata.name", "DNS-1035", name="1notebook"),
    Invalid("Workbench", "name-with-dot", {}, "metadata.name", "DNS-1035", name="team.notebook"),
    Invalid("Workbench", "negative-memory", {"resources.memory": "-4Gi"}, "spec.resources.memory"),
    Invalid("Workbench", "zero-cpu", {"resources.cpu": 0}, "spec.resources.cpu", "above zero"),
    Invalid("Workbench", "zero-storage", {"storage.size": "0Gi"}, "spec.storage.size"),
    Invalid("FineTuneJob", "name-too-long", {}, "metadata.name", "at most 48", name="f" * 49),
    Invalid("FineTuneJob", "name-digit-first", {}, "metadata.name", "DNS-1035", name="2024-run"),
    Invalid(
        "FineTuneJob",
        "multi-node-name-too-long",
        {"resources.nodes": 2},
        "metadata.name",
        "at most 40 characters when spec.resources.nodes > 1",
        name="f" * 41,
    ),
    Invalid("FineTuneJob", "zero-memory", {"resources.memory": "0"}, "spec.resources.memory"),
    Invalid("ModelServer", "name-too-long", {}, "metadata.name", "at most 45", name="m" * 46),
    Invalid("ModelServer", "name-digit-first", {}, "metadata.name", "DNS-1035", name="7bot"),
    Invalid("ModelServer", "negative-cpu", {"resources.cpu": -2}, "spec.resources.cpu"),
    Invalid("DriftMonitor", "name-too-long", {}, "metadata.name", "at most 36", name="d" * 37),
    Invalid("DriftMonitor", "name-digit-first", {}, "metadata.name", "DNS-1035", name="9watch"),
    # Team (cluster-scoped)
    Invalid(
        "Team",
        "name-not-dns1035",
        {},
        "metadata.name",
        "DNS-1035",
        name="1vision",
    ),
    Invalid("Team", "name-too-long", {}, "metadata.name", "at most 63", name="t" * 64),
    Invalid(
        "Team",
        "member-twice",
        {"members": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "alice"}]},
        "spec.members",
    ),
    Invalid(
        "Team",
        "member-kind",
        {"members": [{"kind": "Robot", "name": "r2"}]},
        "spec.members[0].kind",
    ),
    Invalid(
        "Team",
        "member-role",
        {"members": [{"name": "alice", "role": "admin"}]},
        "spec.members[0].role",
    ),
    Invalid(
        "Team",
        "service-account-without-namespace",
        {"members": [{"kind": "ServiceAccount", "name": "ci"}]},
        "spec.members[0].namespace",
        "namespace is required for a ServiceAccount",
    ),
    Invalid(
        "Team",
        "user-with-namespace",
        {"members": [{"kind": "User", "name": "alice", "namespace": "x"}]},
        "spec.members[0].namespace",
        "namespace is required for a ServiceAccount",
    ),
    Invalid(
        "Team",
        "flavors-differ",
        {
            "quota.flavors": [
                {"name": "a100", "resources": [{"name": "nvidia.com/gpu", "nominal": 1}]},
                {"name": "h100", "resources": [{"name": "cpu", "nominal": 1}]},
            ]
        },
        "spec.quota.flavors",
        "every flavor must name the same resources",
    ),
    Invalid(
        "Team",
        "flavor-twice",
        {
            "quota.flavors": [
                {"name": "a100", "resources": [{"name": "cpu", "nominal": 1}]},
                {"name": "a100", "resources": [{"name": "cpu", "nominal": 1}]},
            ]
        },
        "spec.quota.flavors",
    ),
    Invalid("Team", "no-flavors", {"quota.flavors": []}, "spec.quota.flavors"),
    Invalid(
        "Team",
        "nominal-not-quantity",
        {"quota.flavors": [{"name": "a100", "resources": [{"name": "cpu", "nominal": "lots"}]}]},
        "spec.quota.flavors[0].resources[0].nominal",
    ),
    Invalid(
        "Team",
        "borrowing-without-cohort",
        {"quota.cohort": DELETE},
        "spec.quota.cohort",
        "need a cohort",
    ),
    Invalid("Team", "queue-name", {"queueName": "Default"}, "spec.queueName"),
    Invalid(
        "Team",
        "negative-nominal",
        {"quota.flavors": [{"name": "a100", "resources": [{"name": "cpu", "nominal": "-1"}]}]},
        "spec.quota.flavors[0].resources[0].nominal",
    ),
]
