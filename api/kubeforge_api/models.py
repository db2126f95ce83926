"""The API's request and response models. Request bodies and returned objects carry each kind's
own spec and status models (``kubeforge_crds``), so the OpenAPI, the CRD schemas and the
operator agree; the views (catalog, lineage, GPUs) are named here."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic.alias_generators import to_camel

from kubeforge_api.deps import DNS_SUBDOMAIN
from kubeforge_crds import KindInfo
from kubeforge_crds.modelserver import Revision, RolloutDecision


class Wire(BaseModel):
    """camelCase on the wire; unknown fields refused (as kubectl's strict validation does)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Answer(BaseModel):
    """An answer built from the apiserver's objects: camelCase, more fields allowed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class CreateMeta(Wire):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="Object name.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class UpdateMeta(Wire):
    name: str | None = Field(default=None, description="If given, the name in the URL.")
    resource_version: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,20}$",
        description="The version the change is based on (metadata.resourceVersion as read); a "
        "newer object answers 409, even when only its status changed since.",
    )
    generation: int | None = Field(
        default=None,
        ge=1,
        description="The spec the change is based on (metadata.generation as read): another "
        "change of the spec since answers 409; the operator's status writes do not. What an "
        "editor sends (the portal does).",
    )
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ObjectMeta(Answer):
    """The object's metadata as the apiserver keeps it (the common fields named)."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


def create_body(kind: KindInfo) -> type[BaseModel]:
    return create_model(
        f"{kind.kind}Create",
        __base__=Wire,
        metadata=(CreateMeta, ...),
        spec=(kind.spec_model, ...),
    )


def update_body(kind: KindInfo) -> type[BaseModel]:
    return create_model(
        f"{kind.kind}Update",
        __base__=Wire,
        metadata=(UpdateMeta, Field(default_factory=UpdateMeta)),
        spec=(kind.spec_model, ...),
    )


_OBJECT_MODELS: dict[str, type[BaseModel]] = {}


def object_model(kind: KindInfo) -> type[BaseModel]:
    """A kind's object as the apiserver returns it: its spec and status models (one model per
    kind, shared by the routes that answer with it)."""
    if kind.kind in _OBJECT_MODELS:
        return _OBJECT_MODELS[kind.kind]
    model = create_model(
        kind.kind,
        __base__=Answer,
        api_version=(str, ...),
        kind=(str, ...),
        metadata=(ObjectMeta, ...),
        spec=(kind.spec_model, ...),
        status=(Optional[kind.status_model], None),  # type: ignore[arg-type]  # noqa: UP045
    )
    _OBJECT_MODELS[kind.kind] = model
    return model


def list_model(kind: KindInfo) -> type[BaseModel]:
    return create_model(
        f"{kind.kind}List",
        __base__=Answer,
        api_version=(str, ...),
        kind=(str, ...),
        metadata=(dict[str, Any], Field(default_factory=dict)),
        items=(list[object_model(kind)], ...),  # type: ignore[arg-type,misc]
    )


class Events(Answer):
    items: list[dict[str, Any]] = Field(description="core/v1 Events about the object.")


class ContainerLog(Answer):
    pod: str
    container: str
    phase: str | None = Field(default=None, description="The pod's phase.")
    text: str = Field(description="The last lines of the container's log ('' if none).")
    problem: str | None = Field(
        default=None, description="Why there is no log (the container never started, ...)."
    )


class Logs(Answer):
    items: list[ContainerLog] = Field(
        description="The newest pods the object owns, each container's last lines."
    )


class KindSchema(Answer):
    """What a form for the kind is made from: the CRD's own structural schema of ``spec``."""

    kind: str
    api_version: str
    plural: str
    description: str
    mutable: bool = Field(description="Whether the spec may be changed after creation.")
    spec: dict[str, Any] = Field(description="The spec's OpenAPI v3 schema, as in the CRD.")


class WhoAmI(Answer):
    username: str
    groups: list[str]


class Namespaces(Answer):
    items: list[str]


class Health(Answer):
    status: str


class ModelVersionView(Answer):
    """A FineTuneJob's registered output, its metrics, lineage and the servers that serve it."""

    name: str
    phase: str | None = None
    model: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    lineage: dict[str, Any] | None = None
    trigger: str | None = None
    live_data: str | None = None
    served_by: list[str] = Field(default_factory=list)


class ServingView(Answer):
    """A ModelServer: its state, the revisions it serves and the drift seen on them."""

    name: str
    phase: str | None = None
    url: str | None = None
    stable: Revision | None = None
    canary: Revision | None = None
    traffic_split: str | None = None
    rolled_back: Revision | None = None
    source: dict[str, Any]
    drift: list[dict[str, Any]] = Field(default_factory=list)


class Catalog(Answer):
    models: list[ModelVersionView]
    model_servers: list[ServingView]


class LineageServer(Answer):
    name: str
    stable: Revision | None = None
    canary: Revision | None = None
    decisions: list[RolloutDecision] = Field(default_factory=list)


class Lineage(Answer):
    model_server: LineageServer
    source: dict[str, Any]
    fine_tune_job: dict[str, Any] | None = None
    versions: dict[str, dict[str, Any]]
    base_model: str | None = None
    dataset: dict[str, Any] | None = None
    run: str | None = None


class GpuHeld(Answer):
    kind: str
    name: str
    gpus: int


class GpuUse(Answer):
    total: int
    by_kind: dict[str, int]
    objects: list[GpuHeld]


class GpuHours(Answer):
    namespace: str
    hours: float
    by_kind: dict[str, float]
    total: float
    query: str = Field(description="The PromQL that measured it.")


class ModelMap(Answer):
    """Every model and version the caller may read, with purpose, quality, serving state,
    lineage and cost (``kubeforge_api.modelmap``)."""

    generated_at: str
    hours: float = Field(description="The period the costs cover, ending now.")
    currency: str
    namespaces: list[str] = Field(description="The namespaces shown.")
    partial: bool = Field(description="True when some namespaces could not be read.")
    hidden_namespaces: int = Field(description="How many namespaces the caller may not read.")
    warnings: list[str] = Field(
        description="Prices for GPU products no GPU had, GPUs with no price, no Prometheus."
    )
    models: list[dict[str, Any]] = Field(
        description="One a model version: namespace, model, version, uri, source "
        "(fineTuneJob or uri), fineTuneJob {name, phase, deleted}, card, baseModel, dataset, "
        "evaluation, training {gpuHours, cost}, serving [{modelServer, role, phase, "
        "trafficPercent, url, gpuHours, cost, tokens, costPer1kTokens, monitors}]."
    )
    compute: list[dict[str, Any]] = Field(
        description="Every object that held GPUs in the period: namespace, kind, name, "
        "product, gpuHours, pricePerGpuHour, cost."
    )


class QuotaRow(Answer):
    flavor: str
    resource: str
    nominal: float
    borrowing_limit: float | None = Field(
        description="What it may borrow from its cohort; null: no limit (all the cohort has "
        "unused)."
    )
    used: float = Field(description="In use by the ClusterQueue's admitted workloads.")
    borrowed: float
    used_by_this_queue: float


class PendingWorkload(Answer):
    workload: str
    owner: str | None = Field(description="What it runs, e.g. StatefulSet/notebook.")
    priority: int
    position: int = Field(description="Place in the LocalQueue, 1: next.")
    position_in_cluster_queue: int


class QueueView(Answer):
    name: str
    cluster_queue: str
    cohort: str | None
    admitted_workloads: int
    pending_workloads: int
    quota: list[QuotaRow]
    pending: list[PendingWorkload] | None = Field(
        description="null when Kueue's visibility API did not answer."
    )
    problem: str | None = None


class Queues(Answer):
    namespace: str
    queues: list[QueueView]


class TeamResource(Answer):
    name: str
    nominal: str = Field(description="The team's nominal quota (a quantity).")
    used: str = Field(default="0", description="Used by its admitted workloads, borrowed included.")
    borrowed: str = Field(default="0", description="Of that, borrowed from the cohort.")


class TeamFlavor(Answer):
    name: str
    resources: list[TeamResource] = Field(default_factory=list)


class TeamQuota(Answer):
    admitted_workloads: int = 0
    pending_workloads: int = 0
    flavors: list[TeamFlavor] = Field(default_factory=list)


class QuotaReady(Answer):
    status: str | None
    reason: str | None
    message: str | None


class TeamView(Answer):
    name: str
    phase: str | None = Field(description="Pending, Ready or Failed (null: not reconciled yet).")
    namespace: str | None
    members: int | None = Field(description="Members with access now.")
    cluster_queue: str | None
    queue_name: str | None = Field(description="The LocalQueue its workloads name.")
    quota: TeamQuota | None = Field(
        description="Kueue's accounting of the team's ClusterQueue; null while Kueue has not made "
        "it active (quotaReady says why) or the team has no quota."
    )
    quota_ready: QuotaReady | None


class Teams(Answer):
    teams: list[TeamView]


def _quantities(requests: dict[str, str]) -> dict[str, str]:
    from kubernetes.utils.quantity import parse_quantity

    for resource, quantity in requests.items():
        if not resource:
            raise ValueError("requests: a resource name is empty (e.g. cpu, nvidia.com/gpu)")
        try:
            value = parse_quantity(quantity)
            if not value.is_finite() or value < 0:  # "NaN" and "Infinity" parse as decimals
                raise ValueError
        except (ValueError, ArithmeticError):
            example = "e.g. 500m, 2Gi, 1"
            raise ValueError(
                f"requests.{resource}: {quantity!r} is not a Kubernetes quantity ({example})"
            ) from None
    return requests


class FitRequest(Wire):
    requests: dict[str, str] = Field(
        min_length=1,
        max_length=16,
        description='What the workload asks for, e.g. {"nvidia.com/gpu": "1", "cpu": "4"}.',
    )

    @field_validator("requests")
    @classmethod
    def _check(cls, value: dict[str, str]) -> dict[str, str]:
        return _quantities(value)


class Shortfall(Answer):
    resource: str
    requested: float
    free: float


class FitAnswer(Answer):
    fits: bool
    cluster_queue: str
    flavor: str | None = Field(description="The flavor it fits in, or comes closest to.")
    short: list[Shortfall]
    problem: str | None = None
