"""DriftMonitor controller.

A DriftMonitor becomes, in its namespace:

- ``<name>-drift`` ConfigMap (the drift service's ``config.json``, rendered from the spec and the
  resolved reference), Deployment (``python -m kubeforge_runtimes drift serve``) and Service;
- ``<name>-drift`` ServiceMonitor (the service's ``/metrics``) and, with ``actions.alert``, a
  PrometheusRule (DriftDetected, BiasDetected, stale evaluations, malformed payloads);
- the target ModelServer's InferenceService logs to the Service: the ModelServer controller
  sets ``spec.predictor.logger`` from the DriftMonitors that target it (one writer per child), so
  deleting the monitor removes the logger on the next ModelServer reconcile.

Each reconcile reads the drift service's ``/status`` and copies the latest scores into the
status, with the conditions DriftDetected and BiasDetected, then acts: a retraining FineTuneJob
from the template (at most one running, none within the cool-down of the last), or a rollback of
the ModelServer's rollout in progress (through the ``kubeforge.io/rollback-revision``
annotation that the ModelServer controller honours). Every action is recorded in
``status.actions`` and as an Event. The retraining FineTuneJobs are labelled with the monitor's
name but not owned by it: deleting the monitor keeps the training history.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubeforge_crds import FINETUNEJOB, GROUP, MODELSERVER, ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.driftmonitor import (
    ActionRecord,
    DriftMonitorPhase,
    DriftMonitorSpec,
    DriftMonitorStatus,
    FeatureScore,
    ReferenceSource,
)
from kubeforge_crds.finetunejob import FineTuneJobSpec
from kubeforge_operator.children import (
    child_metadata,
    container_security_context,
    pod_security_context,
    standard_labels,
)
from kubeforge_operator.conditions import Observation, get_condition
from kubeforge_operator.finetunejob import TRIGGER_ANNOTATION
from kubeforge_operator.modelserver import ISVC_API
from kubeforge_operator.reconcile import Outcome, ReconcileContext, accepted
from kubeforge_operator.settings import get_settings
from kubeforge_runtimes.drift.config import BiasConfig, FeatureConfig, MonitorConfig

log = logging.getLogger(__name__)

TARGET_FOUND = "TargetFound"
REFERENCE_RESOLVED = "ReferenceResolved"
SERVICE_READY = "ServiceReady"
LOGGER_CONFIGURED = "LoggerConfigured"
DRIFT_DETECTED = "DriftDetected"
BIAS_DETECTED = "BiasDetected"
MONITORING_READY = "MonitoringConfigured"

DRIFT_MONITOR_LABEL = f"{GROUP}/drift-monitor"
ROLLBACK_ANNOTATION = f"{GROUP}/rollback-revision"
ROLLBACK_REASON_ANNOTATION = f"{GROUP}/rollback-reason"
LOGGER_REQUEST_ANNOTATION = f"{GROUP}/logger-requested-by"
MONITORING_API = "monitoring.coreos.com/v1"
SERVICE_PORT = 8080
CONFIG_FILE = "/etc/kubeforge-drift/config.json"
KEEP_ACTIONS = 100
STATUS_TIMEOUT_SECONDS = 5.0
EXPORT_TIMEOUT_SECONDS = 60.0  # the reference is re-read and written out with the window
MAX_RECHECK_SECONDS = 60.0


def service_name(name: str) -> str:
    return f"{name}-drift"


def logger_url(namespace: str, name: str) -> str:
    """Where the InferenceService's logger posts: the drift service, inside the cluster."""
    return f"http://{service_name(name)}.{namespace}.svc.cluster.local:{SERVICE_PORT}/"


def status_url(namespace: str, name: str) -> str:
    """Where the operator reads the drift service's status (settings can redirect it)."""
    template = get_settings().drift_status_url_template
    return template.format(namespace=namespace, name=name, service=service_name(name))


# -- rendering (pure) -----------------------------------------------------------------------------


def monitor_config(
    namespace: str, name: str, spec: DriftMonitorSpec, reference: str
) -> MonitorConfig:
    bias = spec.bias
    return MonitorConfig(
        namespace=namespace,
        name=name,
        reference_uri=reference,
        features=[FeatureConfig(name=f.name, type=str(f.type)) for f in spec.features],  # type: ignore[arg-type]
        metrics={str(m.name): m.threshold for m in spec.metrics},
        bias=(
            BiasConfig(
                protected_attribute=bias.protected_attribute,
                privileged_values=list(bias.privileged_values),
                favourable_outcome=bias.favourable_outcome,
            )
            if bias
            else None
        ),
        window_size=spec.window.size,
        interval_seconds=parse_duration(spec.window.interval).total_seconds(),
        export_dir=export_dir(spec),
        export_uri=spec.actions.retrain.export_uri if export_dir(spec) else None,
    )


EXPORT_MOUNT = "/mnt/export"


def export_dir(spec: DriftMonitorSpec) -> str | None:
    """Where the drift service writes live-data datasets: a pvc://<claim>/<dir> is mounted at
    /mnt/export/<claim>; a file:// location is a path of the service's own machine."""
    retrain = spec.actions.retrain
    if not (retrain.enabled and retrain.include_live_data and retrain.export_uri):
        return None
    uri = retrain.export_uri
    if uri.startswith("pvc://"):
        return f"{EXPORT_MOUNT}/{uri.removeprefix('pvc://').strip('/')}"
    return urllib.parse.urlparse(uri).path


def _labels(name: str) -> dict[str, str]:
    return standard_labels("driftmonitor", name, "drift-service")


def build_config_map(owner: dict[str, Any], config: MonitorConfig) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, service_name(name), _labels(name)),
        "data": {"config.json": config.model_dump_json(by_alias=True, indent=2)},
    }


def build_deployment(
    owner: dict[str, Any],
    config: MonitorConfig,
    image: str,
    secret: str | None = None,
) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    labels = _labels(name)
    selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": service_name(name)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_FILE.rsplit("/", 1)[0], "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the reference is fetched here
    ]
    if config.reference_uri.startswith("pvc://"):
        claim = config.reference_uri.removeprefix("pvc://").split("/", 1)[0]
        volumes.append(
            {"name": "reference", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "reference", "mountPath": f"/mnt/pvc/{claim}", "readOnly": True})
    if config.export_dir and config.export_dir.startswith(EXPORT_MOUNT + "/"):
        claim = config.export_dir.removeprefix(EXPORT_MOUNT + "/").split("/", 1)[0]
        volumes.append({"name": "export", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": "export", "mountPath": f"{EXPORT_MOUNT}/{claim}"})
    container: dict[str, Any] = {
        "name": "drift",
        "image": image,
        "command": ["python", "-m", "kubeforge_runtimes", "drift", "serve"],
        "args": ["--config", CONFIG_FILE, "--port", str(SERVICE_PORT)],
        "ports": [{"name": "http", "containerPort": SERVICE_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
        "resources": {
            "requests": {"cpu": "100m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": {**container_security_context(), "readOnlyRootFilesystem": True},
        "volumeMounts": mounts,
        # the root filesystem is read-only: matplotlib's cache goes to the /tmp emptyDir
        "env": [{"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"}],  # noqa: S108
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(owner, service_name(name), labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    # a new configuration restarts the service (its window refills)
                    "annotations": {f"{GROUP}/config-digest": digest},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def build_service(owner: dict[str, Any]) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    labels = _labels(name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, service_name(name), labels),
        "spec": {
            "selector": {
                k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")
            },
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
        },
    }


def build_service_monitor(owner: dict[str, Any], interval_seconds: float) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    labels = _labels(name)
    scrape = max(10, min(60, int(interval_seconds)))
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": child_metadata(owner, service_name(name), labels),
        "spec": {
            "selector": {
                "matchLabels": {
                    k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")
                }
            },
            "endpoints": [{"port": "http", "path": "/metrics", "interval": f"{scrape}s"}],
        },
    }


def alert_rules(
    namespace: str, name: str, severity: str, interval_seconds: float
) -> list[dict[str, Any]]:
    """The monitor's Prometheus rule groups (a PrometheusRule's ``spec.groups``, which is also
    the rule file format ``promtool test rules`` reads)."""
    sel = f'namespace="{namespace}", monitor="{name}"'
    detected = "kubeforge_drift_detected"
    by_check = "max by (namespace, monitor, feature, metric)"
    by_monitor = "sum by (namespace, monitor)"
    who = "DriftMonitor {{ $labels.namespace }}/{{ $labels.monitor }}"
    check = "{{ $labels.metric }} of {{ $labels.feature }}"
    labels = {"severity": severity, "kubeforge_monitor": name}
    warning = {**labels, "severity": "warning"}
    stale_after = int(max(3 * interval_seconds, 300))
    payloads = f"kubeforge_drift_payloads_total{{{sel}"
    return [
        {
            "name": f"kubeforge-drift-{namespace}-{name}",
            "rules": [
                {
                    "alert": "KubeforgeDriftDetected",
                    "expr": f'{by_check} ({detected}{{{sel}, metric!~"spd|dir"}}) > 0',
                    "labels": labels,
                    "annotations": {
                        "summary": "Data drift: " + check,
                        "description": f"{who}: {check} crossed its threshold.",
                    },
                },
                {
                    "alert": "KubeforgeBiasDetected",
                    "expr": f'{by_check} ({detected}{{{sel}, metric=~"spd|dir"}}) > 0',
                    "labels": labels,
                    "annotations": {
                        "summary": "Bias: " + check,
                        "description": f"{who}: {check} (protected attribute) crossed its "
                        "threshold.",
                    },
                },
                {
                    "alert": "KubeforgeDriftEvaluationStale",
                    "expr": "time() - kubeforge_drift_last_evaluation_timestamp_seconds"
                    f"{{{sel}}} > {stale_after}",
                    "for": "5m",
                    "labels": warning,
                    "annotations": {
                        "summary": "Drift scores are stale",
                        "description": f"{who} has not evaluated for more than {stale_after}s: "
                        "too little traffic to fill the window, or the service is down.",
                    },
                },
                {
                    "alert": "KubeforgeDriftMalformedPayloads",
                    "expr": f'{by_monitor} (rate({payloads}, result="malformed"}}[5m])) / '
                    f"{by_monitor} (rate({payloads}}}[5m])) > 0.1",
                    "for": "10m",
                    "labels": warning,
                    "annotations": {
                        "summary": "Over 10% of inference payloads are malformed",
                        "description": f"{who} cannot read "
                        "{{ $value | humanizePercentage }} of payloads; see its status.",
                    },
                },
            ],
        }
    ]


def build_prometheus_rule(
    owner: dict[str, Any], severity: str, interval_seconds: float
) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": child_metadata(owner, service_name(name), _labels(name)),
        "spec": {
            "groups": alert_rules(owner["metadata"]["namespace"], name, severity, interval_seconds)
        },
    }


# -- reading the service's status (pure) -------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What the drift service's status says, as status fields and conditions."""

    fields: dict[str, Any]
    drift: Observation
    bias: Observation
    crossed: list[str]  # "feature metric value > threshold" of every crossed check

    @property
    def detected(self) -> bool:
        return self.drift.status == ConditionStatus.TRUE or self.bias.status == ConditionStatus.TRUE


def _describe(score: dict[str, Any]) -> str:
    side = "<" if score["metric"] in ("dir", "chiSquare") else ">"
    return (
        f"{score['feature']} {score['metric']} {score['value']:.4g} {side} {score['threshold']:g}"
    )


def read_service_status(body: dict[str, Any], bias_configured: bool) -> Reading:
    latest = body.get("latest")
    window = body.get("window") or {}
    fields: dict[str, Any] = {
        "windowRows": int(window.get("rows") or 0),
        "payloads": {k: int(v) for k, v in (body.get("payloads") or {}).items()},
    }
    no_bias = Observation(
        BIAS_DETECTED, ConditionStatus.FALSE, "NotConfigured", "spec.bias is not set"
    )
    if not latest:
        filling = Observation(
            DRIFT_DETECTED,
            ConditionStatus.UNKNOWN,
            "WindowFilling",
            f"collecting inferences: {fields['windowRows']} of {window.get('size')} in the window",
        )
        bias = (
            no_bias
            if not bias_configured
            else Observation(
                BIAS_DETECTED, ConditionStatus.UNKNOWN, "WindowFilling", filling.message
            )
        )
        return Reading(fields, filling, bias, [])
    scores = [s for s in latest.get("scores") or [] if s.get("value") is not None]
    fields["scores"] = [
        FeatureScore(
            feature=s["feature"],
            metric=s["metric"],
            value=s["value"],
            threshold=s["threshold"],
            crossed=s["crossed"],
        ).to_wire()
        for s in scores
    ]
    fields["lastEvaluation"] = datetime.fromtimestamp(latest["time"], UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    drifted = [_describe(s) for s in scores if s["crossed"] and s["metric"] not in ("spd", "dir")]
    biased = [_describe(s) for s in scores if s["crossed"] and s["metric"] in ("spd", "dir")]
    rows = latest.get("rows")

    def obs(type_: str, crossed: list[str], yes: str, no: str) -> Observation:
        if crossed:
            more = f" (and {len(crossed) - 5} more)" if len(crossed) > 5 else ""
            return Observation(type_, ConditionStatus.TRUE, yes, "; ".join(crossed[:5]) + more)
        return Observation(
            type_,
            ConditionStatus.FALSE,
            no,
            f"every check within its threshold over the latest {rows} inferences",
        )

    drift = obs(DRIFT_DETECTED, drifted, "DriftDetected", "NoDrift")
    bias = obs(BIAS_DETECTED, biased, "BiasDetected", "NoBias") if bias_configured else no_bias
    return Reading(fields, drift, bias, drifted + biased)


# -- retraining (pure decision) -------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainPlan:
    action: str  # create | running | cooldown
    detail: str
    name: str | None = None


def _created(obj: dict[str, Any]) -> datetime:
    return datetime.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )


def plan_retrain(
    monitor: str, existing: list[dict[str, Any]], cooldown: timedelta, now: datetime
) -> RetrainPlan:
    """Whether to start a retraining FineTuneJob, given the ones this monitor started: never
    while one runs, never within ``cooldown`` of the newest; the name is numbered so that two
    reconciles racing create one object."""
    running = [
        o for o in existing if ((o.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
    ]
    if running:
        return RetrainPlan("running", f"{running[0]['metadata']['name']} is still running")
    if existing:
        newest = max(existing, key=_created)
        until = _created(newest) + cooldown
        if now < until:
            return RetrainPlan(
                "cooldown",
                f"cool-down after {newest['metadata']['name']} until {until:%Y-%m-%dT%H:%M:%SZ}",
            )
    numbers = [
        int(o["metadata"]["name"].rsplit("-", 1)[-1])
        for o in existing
        if o["metadata"]["name"].rsplit("-", 1)[-1].isdigit()
    ]
    name = f"{monitor}-retrain-{max(numbers, default=0) + 1}"
    return RetrainPlan("create", "drift detected", name)


def retrain_manifest(
    monitor: dict[str, Any], name: str, template: FineTuneJobSpec, trigger: str
) -> dict[str, Any]:
    meta = monitor["metadata"]
    return {
        "apiVersion": FINETUNEJOB.api_version,
        "kind": FINETUNEJOB.kind,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {DRIFT_MONITOR_LABEL: meta["name"], "app.kubernetes.io/part-of": "kubeforge"},
            "annotations": {TRIGGER_ANNOTATION: trigger[:1024]},
        },
        "spec": template.to_wire(),
    }


# -- the reconciler ------------------------------------------------------------------------------


def _source_fine_tune_job(
    ctx: ReconcileContext, model_server: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    ftj_name = ((model_server.get("spec") or {}).get("model") or {}).get("fineTuneJob")
    if not ftj_name:  # spec.model.modelName: the FineTuneJob of the version serving now
        stable = (model_server.get("status") or {}).get("stable") or {}
        ftj_name = stable.get("fineTuneJob")
    if not ftj_name:
        return None, None
    return ctx.kube.get(FINETUNEJOB, ctx.namespace, ftj_name), ftj_name


def resolve_reference(
    spec: DriftMonitorSpec,
    model_server: dict[str, Any],
    ftj: dict[str, Any] | None,
    ftj_name: str | None,
) -> tuple[str, str | None] | Observation:
    """The reference URI (and the data connection Secret needed to read it)."""
    if spec.reference.source == ReferenceSource.URI:
        return str(spec.reference.uri), None
    ms_name = model_server["metadata"]["name"]
    if ftj_name is None:
        return Observation(
            REFERENCE_RESOLVED,
            ConditionStatus.FALSE,
            "NoTrainingData",
            f"ModelServer {ms_name} serves spec.model.uri, not a FineTuneJob's model, so there is "
            "no training data to compare with; set spec.reference.source to uri and "
            "spec.reference.uri",
        )
    if ftj is None:
        return Observation(
            REFERENCE_RESOLVED,
            ConditionStatus.FALSE,
            "FineTuneJobNotFound",
            f"FineTuneJob {ftj_name} (the source of ModelServer {ms_name}) does not exist",
        )
    status = ftj.get("status") or {}
    dataset = (ftj.get("spec") or {}).get("dataset") or {}
    uri = (status.get("lineage") or {}).get("datasetUri") or dataset.get("uri")
    if not uri:
        return Observation(
            REFERENCE_RESOLVED,
            ConditionStatus.FALSE,
            "NoTrainingData",
            f"FineTuneJob {ftj_name} names no dataset",
        )
    return str(uri), dataset.get("dataConnection")


def _fetch_status(url: str) -> dict[str, Any] | str:
    try:
        response = httpx.get(url.rstrip("/") + "/status", timeout=STATUS_TIMEOUT_SECONDS)
        response.raise_for_status()
        return cast(dict[str, Any], response.json())
    except (httpx.HTTPError, ValueError) as err:
        return f"{type(err).__name__}: {err}"


def _record(
    ctx: ReconcileContext, actions: list[ActionRecord], type_: str, target: str | None, reason: str
) -> None:
    actions.append(
        ActionRecord(
            time=ctx.now,
            type=type_,
            target=target,
            reason=reason[:1024],
        )
    )
    ctx.kube.record_event(
        ctx.obj,
        "Warning" if type_ != "alert" else "Normal",
        f"Action{type_.title()}",
        f"{target or ''}: {reason}",
    )


def reconcile_driftmonitor(ctx: ReconcileContext, spec: DriftMonitorSpec) -> Outcome:
    status = cast(DriftMonitorStatus, ctx.kind.parse_status(ctx.obj.get("status")))
    settings = get_settings()
    interval = parse_duration(spec.window.interval).total_seconds()
    recheck = min(interval, MAX_RECHECK_SECONDS)
    phase = str(status.phase or DriftMonitorPhase.PENDING)
    target = spec.target.model_server
    model_server = ctx.kube.get(MODELSERVER, ctx.namespace, target)
    if model_server is None:
        missing = Observation(
            TARGET_FOUND,
            ConditionStatus.FALSE,
            "ModelServerNotFound",
            f"ModelServer {target} does not exist in namespace {ctx.namespace}",
        )
        return Outcome(
            phase=DriftMonitorPhase.PENDING, dependents=[accepted(), missing], requeue_after=recheck
        )
    found = Observation(TARGET_FOUND, ConditionStatus.TRUE, "Found", f"ModelServer {target}")
    ftj, ftj_name = _source_fine_tune_job(ctx, model_server)
    resolved = resolve_reference(spec, model_server, ftj, ftj_name)
    if isinstance(resolved, Observation):
        return Outcome(
            phase=DriftMonitorPhase.PENDING,
            dependents=[accepted(), found, resolved],
            requeue_after=recheck,
        )
    reference, secret = resolved
    reference_ok = Observation(REFERENCE_RESOLVED, ConditionStatus.TRUE, "Resolved", reference)

    config = monitor_config(ctx.namespace, ctx.name, spec, reference)
    for manifest in (
        build_config_map(ctx.obj, config),
        build_deployment(ctx.obj, config, settings.drift_image, secret),
        build_service(ctx.obj),
    ):
        ctx.kube.apply(manifest)
    info: list[Observation] = []
    try:
        ctx.kube.apply(build_service_monitor(ctx.obj, interval))
        if spec.actions.alert.enabled:
            ctx.kube.apply(build_prometheus_rule(ctx.obj, spec.actions.alert.severity, interval))
        info.append(
            Observation(
                MONITORING_READY,
                ConditionStatus.TRUE,
                "Applied",
                "ServiceMonitor" + (" and PrometheusRule" if spec.actions.alert.enabled else ""),
            )
        )
    except ResourceNotFoundError:
        info.append(
            Observation(
                MONITORING_READY,
                ConditionStatus.FALSE,
                "PrometheusOperatorNotInstalled",
                "monitoring.coreos.com/v1 (ServiceMonitor, PrometheusRule) is not served by this "
                "cluster; the scores are still on the drift service's /metrics and in this status",
            )
        )

    logger = _logger_observation(ctx, target)
    if logger.reason == "Waiting":
        _nudge(ctx, model_server)
    fields: dict[str, Any] = {
        "referenceUri": reference,
        "service": logger_url(ctx.namespace, ctx.name),
    }
    body = _fetch_status(status_url(ctx.namespace, ctx.name))
    if isinstance(body, str):
        service = Observation(
            SERVICE_READY,
            ConditionStatus.FALSE,
            "ServiceUnreachable",
            f"the drift service does not answer: {body}",
        )
        return Outcome(
            phase=DriftMonitorPhase.PENDING,
            dependents=[accepted(), found, reference_ok, service, logger],
            fields=fields,
            info=info,
            requeue_after=recheck,
        )
    if not body.get("ready"):
        error = str(body.get("error") or "the reference is loading")
        reason = "ReferenceMismatch" if "column" in error else "ReferenceUnavailable"
        service = Observation(SERVICE_READY, ConditionStatus.FALSE, reason, error)
        return Outcome(
            phase=DriftMonitorPhase.FAILED
            if reason == "ReferenceMismatch"
            else DriftMonitorPhase.PENDING,
            dependents=[accepted(), found, reference_ok, service, logger],
            fields=fields,
            info=info,
            requeue_after=recheck,
        )
    service = Observation(
        SERVICE_READY,
        ConditionStatus.TRUE,
        "Ready",
        f"reference {reference}: {(body.get('reference') or {}).get('rows')} rows",
    )

    reading = read_service_status(body, spec.bias is not None)
    fields.update(reading.fields)
    info += [reading.drift, reading.bias]
    actions = list(status.actions)
    before = len(actions)
    if reading.detected:
        _act(ctx, spec, status, model_server, ftj, reading, actions)
    if len(actions) != before:
        fields["actions"] = [a.to_wire() for a in actions[-KEEP_ACTIONS:]]
    phase = DriftMonitorPhase.DRIFTED if reading.detected else DriftMonitorPhase.MONITORING
    return Outcome(
        phase=phase,
        dependents=[accepted(), found, reference_ok, service, logger],
        fields=fields,
        info=info,
        requeue_after=recheck,
    )


def _nudge(ctx: ReconcileContext, model_server: dict[str, Any]) -> None:
    """Annotate the ModelServer so that its watch event reconciles it now (it sets the logger)
    instead of at its next resync; written once per monitor."""
    annotations = model_server["metadata"].get("annotations") or {}
    if annotations.get(LOGGER_REQUEST_ANNOTATION) != ctx.name:
        ctx.kube.annotate(
            MODELSERVER,
            ctx.namespace,
            model_server["metadata"]["name"],
            LOGGER_REQUEST_ANNOTATION,
            ctx.name,
        )


def _logger_observation(ctx: ReconcileContext, target: str) -> Observation:
    isvc = ctx.kube.get_child(ISVC_API, "InferenceService", ctx.namespace, target)
    want = logger_url(ctx.namespace, ctx.name)
    if isvc is None:
        return Observation(
            LOGGER_CONFIGURED,
            ConditionStatus.FALSE,
            "InferenceServiceNotFound",
            f"ModelServer {target} has no InferenceService yet",
        )
    logger = (((isvc.get("spec") or {}).get("predictor") or {}).get("logger")) or {}
    if logger.get("url") == want:
        return Observation(
            LOGGER_CONFIGURED,
            ConditionStatus.TRUE,
            "Configured",
            f"InferenceService {target} logs to {want}",
        )
    if logger.get("url"):
        return Observation(
            LOGGER_CONFIGURED,
            ConditionStatus.FALSE,
            "LoggerTaken",
            f"InferenceService {target} already logs to {logger['url']}: KServe has one logger per "
            "InferenceService, so one DriftMonitor per ModelServer (the first by name wins)",
        )
    return Observation(
        LOGGER_CONFIGURED,
        ConditionStatus.FALSE,
        "Waiting",
        f"waiting for the ModelServer controller to point the logger of InferenceService "
        f"{target} at {want}",
    )


def _act(
    ctx: ReconcileContext,
    spec: DriftMonitorSpec,
    status: DriftMonitorStatus,
    model_server: dict[str, Any],
    ftj: dict[str, Any] | None,
    reading: Reading,
    actions: list[ActionRecord],
) -> None:
    summary = "; ".join(reading.crossed[:3])
    previous = get_condition(status.conditions, DRIFT_DETECTED)
    previous_bias = get_condition(status.conditions, BIAS_DETECTED)
    newly = not (
        (previous and previous.status == ConditionStatus.TRUE)
        or (previous_bias and previous_bias.status == ConditionStatus.TRUE)
    )
    if spec.actions.alert.enabled and newly:
        _record(ctx, actions, "alert", service_name(ctx.name), f"PrometheusRule fires: {summary}")
    if spec.actions.rollback:
        _rollback(ctx, model_server, summary, actions)
    if spec.actions.retrain.enabled:
        _retrain(ctx, spec, ftj, summary, actions)


def _rollback(
    ctx: ReconcileContext, model_server: dict[str, Any], summary: str, actions: list[ActionRecord]
) -> None:
    canary = ((model_server.get("status") or {}).get("canary") or {}).get("revision")
    annotations = model_server["metadata"].get("annotations") or {}
    if not canary or annotations.get(ROLLBACK_ANNOTATION) == canary:
        return  # no rollout in progress, or already asked
    name = model_server["metadata"]["name"]
    reason = f"DriftMonitor {ctx.name}: {summary}"
    ctx.kube.custom.patch_namespaced_custom_object(
        MODELSERVER.group,
        MODELSERVER.version,
        ctx.namespace,
        MODELSERVER.plural,
        name,
        {
            "metadata": {
                "annotations": {
                    ROLLBACK_ANNOTATION: canary,
                    ROLLBACK_REASON_ANNOTATION: reason[:1024],
                }
            }
        },
    )
    _record(
        ctx, actions, "rollback", f"ModelServer/{name}", f"rolled back canary {canary}: {summary}"
    )


def _retrain(
    ctx: ReconcileContext,
    spec: DriftMonitorSpec,
    ftj: dict[str, Any] | None,
    summary: str,
    actions: list[ActionRecord],
) -> None:
    template = spec.actions.retrain.template
    if template is None:
        if ftj is None:
            log.warning(
                "retrain: no template and no source FineTuneJob",
                extra={"object": f"{ctx.namespace}/{ctx.name}"},
            )
            return
        template = FineTuneJobSpec.model_validate(ftj["spec"])
    existing = ctx.kube.list_children(
        FINETUNEJOB.api_version,
        FINETUNEJOB.kind,
        ctx.namespace,
        f"{DRIFT_MONITOR_LABEL}={ctx.name}",
    )
    plan = plan_retrain(ctx.name, existing, parse_duration(spec.actions.retrain.cooldown), ctx.now)
    if plan.action != "create" or plan.name is None:
        return
    trigger = f"drift:{ctx.namespace}/{ctx.name}: {summary}"
    manifest = retrain_manifest(ctx.obj, plan.name, template, trigger)
    if spec.actions.retrain.include_live_data:
        try:
            exported = export_live_data(ctx.namespace, ctx.name, plan.name)
        except ExportFailedError as err:
            # no run without its data; the next reconcile tries again
            log.warning(
                "retrain: live data export failed",
                extra={"object": f"{ctx.namespace}/{ctx.name}", "error": str(err)},
            )
            _record(ctx, actions, "retrain", f"FineTuneJob/{plan.name}", f"not started: {err}")
            return
        with_live_data(manifest, exported)
    try:
        ctx.kube.custom.create_namespaced_custom_object(
            FINETUNEJOB.group,
            FINETUNEJOB.version,
            ctx.namespace,
            FINETUNEJOB.plural,
            manifest,
        )
    except client.ApiException as exc:
        if exc.status == 409:
            return  # a concurrent reconcile created it
        raise
    _record(ctx, actions, "retrain", f"FineTuneJob/{plan.name}", summary)


LIVE_DATA_ANNOTATION = f"{GROUP}/live-data"


class ExportFailedError(Exception):
    pass


def export_live_data(namespace: str, name: str, run: str) -> dict[str, Any]:
    """Ask the monitor's drift service to write the reference plus its live window as the
    dataset ``<exportUri>/<run>.jsonl``; what it wrote (uri, row counts, sha256)."""
    url = status_url(namespace, name).rstrip("/") + "/export"
    try:
        response = httpx.post(url, json={"name": run}, timeout=EXPORT_TIMEOUT_SECONDS)
    except httpx.HTTPError as err:
        raise ExportFailedError(f"drift service unreachable at {url}: {err}") from err
    if response.status_code != 200:
        detail = response.text[:300]
        with contextlib.suppress(ValueError):
            detail = str(response.json().get("detail", detail))
        raise ExportFailedError(f"drift service answered {response.status_code}: {detail}")
    return dict(response.json())


def with_live_data(manifest: dict[str, Any], exported: dict[str, Any]) -> None:
    """Point the retraining run at the exported dataset and say what it holds."""
    manifest["spec"]["dataset"]["uri"] = exported["uri"]
    manifest["metadata"].setdefault("annotations", {})[LIVE_DATA_ANNOTATION] = (
        f"{exported['referenceRows']} training rows + {exported['liveRows']} live rows, "
        f"sha256 {exported['sha256']}"
    )
