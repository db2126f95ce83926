"""Preconditions of serving, each a small policy returning why not (an Observation) or what
to serve: the model version, the ServingRuntime, the PromQL of the rollout metrics."""

from __future__ import annotations

from typing import Any, NamedTuple, cast

from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import FINETUNEJOB, ConditionStatus
from kubeforge_crds.contracts.serving import RUNTIME_API
from kubeforge_crds.finetunejob import FineTuneJobPhase
from kubeforge_crds.modelserver import (
    MetricType,
    ModelRef,
    ModelServerSpec,
    ServedAs,
)
from kubeforge_operator.modelserver.conditions import MODEL_RESOLVED
from kubeforge_operator.modelserver.prometheus import checked_query
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation
from kubeforge_operator.runtime.prometheus import Prometheus, PrometheusError
from kubeforge_operator.runtime.promql import PromQLError
from kubeforge_operator.runtime.reconcile import ReconcileContext


class Resolved(NamedTuple):
    """What a ModelServer serves: the model version and, when a FineTuneJob made it, that
    FineTuneJob and its base model."""

    uri: str
    fine_tune_job: str | None = None
    base_model: str | None = None


def base_model_of(ftj: dict[str, Any]) -> str | None:
    uri = ((ftj.get("spec") or {}).get("baseModel") or {}).get("uri")
    return str(uri) if uri else None


def resolve_model(ctx: ReconcileContext, spec: ModelServerSpec) -> Resolved | Observation:
    """The model URI (and its FineTuneJob), or why there is none to serve yet."""
    return resolve_ref(ctx, spec.model, "spec.model")


def adapter_schemes(spec: ModelServerSpec) -> tuple[str, ...]:
    """Where the server can load adapters from: kubeforge's runtime mounts volumes beside the
    base model; KServe's LLMInferenceService also downloads them (its storage initializer)."""
    if spec.runtime.served_as == ServedAs.LLM_INFERENCE_SERVICE:
        return ("hf://", "s3://", "pvc://")
    return ("pvc://",)


def resolve_adapters(ctx: ReconcileContext, spec: ModelServerSpec) -> dict[str, str] | Observation:
    """Each adapter's version URI by name, or why one cannot be served (yet)."""
    found: dict[str, str] = {}
    for i, adapter in enumerate(spec.adapters):
        where = f"spec.adapters[{i}]"
        if adapter.name == ctx.name:
            return Observation(
                MODEL_RESOLVED,
                ConditionStatus.FALSE,
                "AdapterNameTaken",
                f"{where}.name: {adapter.name!r} is the ModelServer's own name, which serves the "
                "base model; give the adapter another name",
            )
        resolved = resolve_ref(ctx, adapter, where)
        if isinstance(resolved, Observation):
            return resolved
        if not resolved.uri.startswith(adapter_schemes(spec)):
            if spec.runtime.served_as == ServedAs.LLM_INFERENCE_SERVICE:
                return Observation(
                    MODEL_RESOLVED,
                    ConditionStatus.FALSE,
                    "AdapterSchemeNotSupported",
                    f"{where}: the version to serve is {resolved.uri}; KServe's "
                    "LLMInferenceService loads LoRA adapters from hf://, s3:// or pvc://",
                )
            return Observation(
                MODEL_RESOLVED,
                ConditionStatus.FALSE,
                "AdapterNotOnVolume",
                f"{where}: the version to serve is {resolved.uri}; the runtime loads adapters "
                "from volumes (pvc://claim/path), which it mounts beside the base model",
            )
        found[adapter.name] = resolved.uri
    return found


def resolve_ref(ctx: ReconcileContext, ref: ModelRef, where: str) -> Resolved | Observation:
    """The version a model reference names (``where``: its field path, for the messages).

    Long on purpose: each way a FineTuneJob may not have a version yet is its own message."""
    if ref.uri:
        return Resolved(ref.uri)
    if ref.model_name:
        listed = ctx.kube.custom.list_namespaced_custom_object(
            FINETUNEJOB.group, FINETUNEJOB.version, ctx.namespace, FINETUNEJOB.plural
        )
        items = listed.get("items") or []
        newest = newest_version(items, ref.model_name)
        if newest is None:
            return Observation(
                MODEL_RESOLVED,
                ConditionStatus.FALSE,
                "NoModelVersion",
                f"{where}.modelName: no Succeeded FineTuneJob in {ctx.namespace} has "
                f"registered a version of model {ref.model_name!r} yet (spec.output."
                "modelName); serving starts when one has",
            )
        made_by = next(f for f in items if f["metadata"]["name"] == newest[1])
        return Resolved(*newest, base_model_of(made_by))
    name = cast(str, ref.fine_tune_job)
    ftj = ctx.kube.get(FINETUNEJOB, ctx.namespace, name)
    if ftj is None:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobNotFound",
            f"{where}.fineTuneJob: FineTuneJob {name!r} not found in {ctx.namespace}",
        )
    status = ftj.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == FineTuneJobPhase.FAILED:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobFailed",
            f"{where}.fineTuneJob: FineTuneJob {name!r} failed; it has no model to serve",
        )
    uri = (status.get("model") or {}).get("uri")
    if phase == FineTuneJobPhase.SUCCEEDED and not uri:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobHasNoModel",
            f"{where}.fineTuneJob: FineTuneJob {name!r} succeeded but reported no model "
            f"version (status.model.uri is empty); serve its output with {where}.uri",
        )
    if phase != FineTuneJobPhase.SUCCEEDED:
        return Observation(
            MODEL_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobNotSucceeded",
            f"{where}.fineTuneJob: FineTuneJob {name!r} is {phase}; serving starts when it "
            "has Succeeded",
        )
    return Resolved(str(uri), name, base_model_of(ftj))


def newest_version(finetunejobs: list[dict[str, Any]], model_name: str) -> tuple[str, str] | None:
    """(URI, FineTuneJob) of the version of ``model_name`` registered last: among Succeeded
    FineTuneJobs whose status.model names it, the latest completionTime (then name)."""
    candidates = []
    for ftj in finetunejobs:
        status = ftj.get("status") or {}
        model = status.get("model") or {}
        if (
            status.get("phase") == FineTuneJobPhase.SUCCEEDED
            and model.get("name") == model_name
            and model.get("uri")
        ):
            done = status.get("completionTime") or ftj["metadata"].get("creationTimestamp", "")
            candidates.append((done, ftj["metadata"]["name"], str(model["uri"])))
    if not candidates:
        return None
    _, name, uri = max(candidates)
    return uri, name


def runtime_problem(ctx: ReconcileContext, spec: ModelServerSpec) -> Observation | None:
    name = spec.runtime.serving_runtime
    if name is None:
        return None
    try:
        found = ctx.kube.get_child(RUNTIME_API, "ServingRuntime", ctx.namespace, name)
        found = found or ctx.kube.get_child(RUNTIME_API, "ClusterServingRuntime", "", name)
    except ResourceNotFoundError:
        found = None
    if found is None:
        return Observation(
            ACCEPTED,
            ConditionStatus.FALSE,
            "UnknownRuntime",
            f"spec.runtime.servingRuntime: no ServingRuntime or ClusterServingRuntime named "
            f"{name!r}; unset it to use kubeforge's built-in runtime",
        )
    return None


def confinement_problem(spec: ModelServerSpec, namespace: str) -> Observation | None:
    """A promql metric that is not valid PromQL or reads outside the ModelServer's namespace
    (the operator runs it with its own identity and writes the value into status, where the
    owner reads it): refused, naming the metric."""
    for i, metric in enumerate(spec.rollout.metrics):
        if metric.type != MetricType.PROMQL or metric.query is None:
            continue
        try:
            checked_query(metric.query, namespace)
        except PromQLError as err:
            outside = "reads only its own namespace" in str(err)
            return Observation(
                ACCEPTED,
                ConditionStatus.FALSE,
                "PromQLOutsideNamespace" if outside else "InvalidPromQL",
                f"spec.rollout.metrics[{i}].query: {err}",
            )
    return None


def promql_problem(
    spec: ModelServerSpec, namespace: str, prom: Prometheus | None
) -> Observation | None:
    """Prometheus's parse error for a promql metric, checked before a rollout starts."""
    if prom is None:
        return None
    for metric in spec.rollout.metrics:
        if metric.type != MetricType.PROMQL or metric.query is None:
            continue
        query = checked_query(metric.query, namespace)
        try:
            error = prom.check(query)
        except PrometheusError:
            return None  # cannot check now; the analysis will say it has no data
        if error:
            i = spec.rollout.metrics.index(metric)
            return Observation(
                ACCEPTED,
                ConditionStatus.FALSE,
                "InvalidPromQL",
                f"spec.rollout.metrics[{i}].query: Prometheus rejects it: {error}",
            )
    return None
