"""One ModelServer reconcile reads each child at most once: a recording client stands in for the
Kubernetes calls (the reconcile's own code runs unchanged) and counts every read by object."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from kubeforge_crds import MODELSERVER
from kubeforge_crds.contracts.drift import logger_url
from kubeforge_crds.contracts.serving import ISVC_API
from kubeforge_operator.modelserver import reconcile_modelserver
from kubeforge_operator.modelserver.revisions import desired_revision
from kubeforge_operator.runtime.reconcile import ReconcileContext
from kubeforge_operator.runtime.settings import OperatorSettings

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NS, NAME = "team-a", "bot"


class RecordingCustom:
    """The CustomObjectsApi calls the reconcile makes (lists of DriftMonitors, FineTuneJobs)."""

    def __init__(self, kube: RecordingKube) -> None:
        self.kube = kube

    def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str
    ) -> dict[str, Any]:
        self.kube.reads[("list", plural, namespace)] += 1
        return {"items": copy.deepcopy(self.kube.lists.get(plural, []))}


class RecordingKube:
    """Serves objects from dicts and counts each read by (verb, kind, name)."""

    def __init__(self, children: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.children = children
        self.lists: dict[str, list[dict[str, Any]]] = {}
        self.reads: Counter[tuple[str, str, str]] = Counter()
        self.applied: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.custom = RecordingCustom(self)

    def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads[("get", kind.kind, name)] += 1
        return None

    def get_child(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        self.reads[("get", kind, name)] += 1
        found = self.children.get((kind, name))
        return copy.deepcopy(found) if found else None

    def apply_observed(
        self, manifest: dict[str, Any], live: dict[str, Any] | None
    ) -> dict[str, Any]:
        """As the apiserver answers a server-side apply: the object with a new generation
        when the spec changed; KServe has not reported on that generation yet."""
        self.applied.append(manifest)
        generation = int((live or {}).get("metadata", {}).get("generation") or 0)
        changed = live is None or live.get("spec") != manifest["spec"]
        result = copy.deepcopy(manifest)
        result["metadata"]["generation"] = generation + 1 if changed else generation
        result["status"] = copy.deepcopy((live or {}).get("status") or {})
        self.children[(manifest["kind"], manifest["metadata"]["name"])] = result
        return result

    def record_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


def _model_server(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": MODELSERVER.api_version,
        "kind": "ModelServer",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u-1", "generation": 1},
        "spec": {
            "model": {"uri": "s3://m/v2"},
            "rollout": {"steps": [10, 100], "interval": "30s"},
            **spec,
        },
        "status": status or {},
    }


def _ready_isvc(generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS, "generation": generation},
        "spec": {"predictor": {}},
        "status": {
            "observedGeneration": generation,
            "url": f"http://{NAME}.{NS}.example",
            "conditions": [{"type": "Ready", "status": "True"}],
            "canaryStatuses": [{"name": "canary", "ready": True, "trafficPercent": 10}],
        },
    }


MODES = ["Serverless", "Standard"]


def _canary_deployment(uri: str = "s3://m/v2") -> dict[str, Any]:
    """KServe's Deployment of the canary predictor, rolled out with the revision of ``uri``."""
    spec = MODELSERVER.parse_spec(_model_server()["spec"])
    env = [
        {"name": "KUBEFORGE_RUNTIME_REVISION", "value": desired_revision(uri, spec, None).revision}
    ]
    return {
        "metadata": {"name": f"{NAME}-canary-predictor", "generation": 1},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"env": env}]}}},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }


def _route(canary_weight: int, minutes: float) -> dict[str, Any]:
    """The operator's HTTPRoute, its weights applied ``minutes`` ago."""
    since = (NOW - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    backends = [{"name": f"{NAME}-predictor", "weight": 100 - canary_weight}]
    if canary_weight:
        backends.append({"name": f"{NAME}-canary-predictor", "weight": canary_weight})
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "annotations": {"kubeforge.io/weights-since": since},
        },
        "spec": {"rules": [{"backendRefs": backends}]},
    }


def _rollout_status(started: datetime, due: datetime) -> dict[str, Any]:
    """A ModelServer's status in a rollout of s3://m/v2 at 10% over s3://m/v1."""
    spec = MODELSERVER.parse_spec(_model_server()["spec"])
    stable = desired_revision("s3://m/v1", spec, None).model_copy(update={"traffic_percent": 90})
    canary = desired_revision("s3://m/v2", spec, None).model_copy(update={"traffic_percent": 10})
    return {
        "stable": stable.to_wire(),
        "canary": canary.to_wire(),
        "rollout": {
            "revision": canary.revision,
            "step": 0,
            "failures": 0,
            "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nextAnalysisTime": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def _reconcile(kube: RecordingKube, obj: dict[str, Any], mode: str = "Serverless") -> Any:
    settings = OperatorSettings(kserve_mode=mode)
    ctx = ReconcileContext(kind=MODELSERVER, obj=obj, kube=kube, now=NOW, settings=settings)  # type: ignore[arg-type]
    return reconcile_modelserver(ctx, MODELSERVER.parse_spec(obj["spec"]))


def _assert_each_read_once(kube: RecordingKube) -> None:
    twice = {key: n for key, n in kube.reads.items() if n > 1}
    assert not twice, f"read more than once in one reconcile: {twice}"


@pytest.mark.parametrize("mode", MODES)
def test_first_deployment_reads_the_inference_service_once(mode: str) -> None:
    kube = RecordingKube({})
    outcome = _reconcile(kube, _model_server(), mode)
    assert kube.reads[("get", "InferenceService", NAME)] == 1
    _assert_each_read_once(kube)
    # Standard mode: kubeforge's route (before the InferenceService), read once too
    expected = ["HTTPRoute", "InferenceService"] if mode == "Standard" else ["InferenceService"]
    assert [a["kind"] for a in kube.applied] == expected
    assert kube.reads[("get", "HTTPRoute", NAME)] == (mode == "Standard")
    # the apply's answer is the observation: KServe has not reported on the new generation
    isvc_ready = next(o for o in outcome.dependents if o.type == "InferenceServiceReady")
    assert isvc_ready.reason == "WaitingForKServe"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_monitor", [False, True])
def test_an_analysis_in_a_rollout_reads_each_child_once(with_monitor: bool, mode: str) -> None:
    due = NOW - timedelta(seconds=1)
    status = _rollout_status(NOW - timedelta(minutes=1), due)
    kube = RecordingKube(
        {
            ("InferenceService", NAME): _ready_isvc(),
            ("HTTPRoute", NAME): _route(10, minutes=1),
            ("Deployment", f"{NAME}-canary-predictor"): _canary_deployment(),
        }
    )
    if with_monitor:
        kube.lists["driftmonitors"] = [
            {"metadata": {"name": "watch"}, "spec": {"target": {"modelServer": NAME}}}
        ]
    outcome = _reconcile(kube, _model_server(status), mode)
    # the analysis ran (no Prometheus configured: it holds, saying so) on the one read
    assert kube.reads[("get", "InferenceService", NAME)] == 1
    assert kube.reads[("list", "driftmonitors", NS)] == 1
    _assert_each_read_once(kube)
    assert kube.events, "the analysis recorded a decision"
    isvc = next(a for a in kube.applied if a["kind"] == "InferenceService")
    logger = isvc["spec"]["predictor"].get("logger")
    assert (logger or {}).get("url") == (logger_url(NS, "watch") if with_monitor else None)
    assert outcome.fields["inferenceService"] == NAME


class RefusingKube(RecordingKube):
    """KServe's validating webhook refuses the InferenceService."""

    denial = "the canary minReplicas must not exceed the stable's"

    def apply_observed(
        self, manifest: dict[str, Any], live: dict[str, Any] | None
    ) -> dict[str, Any]:
        if manifest["kind"] == "InferenceService":
            body = {
                "kind": "Status",
                "message": 'admission webhook "inferenceservice.kserve-webhook-server.validator" '
                f"denied the request: {self.denial}",
            }
            exc = client.ApiException(status=400, reason="Bad Request")
            exc.body = json.dumps(body)
            raise exc
        return super().apply_observed(manifest, live)


def test_a_refusal_by_kserves_webhook_is_reported_and_nothing_is_analysed() -> None:
    kube = RefusingKube({})
    outcome = _reconcile(kube, _model_server(), "Standard")
    refused = next(o for o in outcome.dependents if o.type == "InferenceServiceReady")
    assert refused.reason == "RefusedByKServe"
    assert refused.message.startswith('admission webhook "inferenceservice.kserve-webhook')
    assert refused.message.endswith("must not exceed the stable's")  # KServe's words alone
    assert not kube.events  # no rollout decision recorded


def test_a_refused_change_of_deployment_mode_says_what_to_do() -> None:
    """KServe never changes an InferenceService's mode: the refusal says why it happened and
    the two ways out, which KServe's words do not."""
    kube = RefusingKube({})
    kube.denial = "update rejected: deploymentMode cannot be changed from 'Knative' to 'Standard'"
    outcome = _reconcile(kube, _model_server(), "Standard")
    refused = next(o for o in outcome.dependents if o.type == "InferenceServiceReady")
    assert refused.reason == "RefusedByKServe"
    assert "cannot be changed from 'Knative' to 'Standard'; the deployment mode" in refused.message
    assert "delete the InferenceService for kubeforge to create it again" in refused.message


def test_a_steps_interval_starts_when_the_canary_gets_its_traffic() -> None:
    """Standard mode: KServe reports the canary ready only after its pods started; the route
    gives it its share then, and the analysis is an interval after that, not after the start."""
    started = NOW - timedelta(seconds=25)
    status = _rollout_status(started, started + timedelta(seconds=30))
    route = _route(0, minutes=1)
    kube = RecordingKube(
        {
            ("InferenceService", NAME): _ready_isvc(),
            ("HTTPRoute", NAME): route,
            ("Deployment", f"{NAME}-canary-predictor"): _canary_deployment(),
        }
    )
    outcome = _reconcile(kube, _model_server(status), "Standard")
    applied = next(a for a in kube.applied if a["kind"] == "HTTPRoute")
    weights = {b["name"]: b["weight"] for b in applied["spec"]["rules"][0]["backendRefs"]}
    assert weights == {f"{NAME}-predictor": 90, f"{NAME}-canary-predictor": 10}
    assert outcome.fields["rollout"]["nextAnalysisTime"] == "2026-11-30T12:00:30Z"  # NOW + 30s
    assert outcome.requeue_after == 30


def test_no_analysis_before_the_route_carried_the_steps_weight_for_an_interval() -> None:
    """Whatever status says (a restarted operator may have lost a write), the route's own
    record of when its weights changed decides: 10 s of a 30 s interval is not enough."""
    status = _rollout_status(NOW - timedelta(minutes=2), NOW - timedelta(minutes=1))
    kube = RecordingKube(
        {
            ("InferenceService", NAME): _ready_isvc(),
            ("HTTPRoute", NAME): _route(10, 10 / 60),
            ("Deployment", f"{NAME}-canary-predictor"): _canary_deployment(),
        }
    )
    outcome = _reconcile(kube, _model_server(status), "Standard")
    assert not kube.events  # no decision
    assert outcome.fields["rollout"]["nextAnalysisTime"] == "2026-11-30T12:00:20Z"


def test_a_canary_rolling_over_a_draining_one_is_not_ready_whatever_kserve_says() -> None:
    """Standard mode: a new version applied while the previous canary still drains is a rolling
    update of the canary's Deployment, whose old pod keeps it available (KServe: ready) while
    the new one fails. CanaryReady says so, and the route gives the new version nothing."""
    status = _rollout_status(NOW - timedelta(seconds=5), NOW + timedelta(seconds=25))
    stale = _canary_deployment("s3://m/v1")  # the pods still run the previous canary
    stale["metadata"]["name"] = f"{NAME}-canary-predictor"
    stale["status"]["unavailableReplicas"] = 1
    kube = RecordingKube(
        {
            ("InferenceService", NAME): _ready_isvc(),
            ("HTTPRoute", NAME): _route(0, minutes=1),
            ("Deployment", f"{NAME}-canary-predictor"): stale,
        }
    )
    outcome = _reconcile(kube, _model_server(status), "Standard")
    canary = next(o for o in outcome.info if o.type == "CanaryReady")
    assert (canary.status, canary.reason) == ("False", "RollingOut")
    assert canary.message.startswith(f"Deployment {NAME}-canary-predictor has 1 of 1 replicas")
    route = next(a for a in kube.applied if a["kind"] == "HTTPRoute")
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == [f"{NAME}-predictor"]
    # past the Deployment's progress deadline: Kubernetes' own reason and message
    stale["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": 'ReplicaSet "bot-canary-predictor-7d9" has timed out progressing.'}
    ]  # fmt: skip
    outcome = _reconcile(
        RecordingKube({**kube.children, ("Deployment", stale["metadata"]["name"]): stale}),
        _model_server(status),
        "Standard",
    )
    canary = next(o for o in outcome.info if o.type == "CanaryReady")
    assert (canary.status, canary.reason) == ("False", "ProgressDeadlineExceeded")
    assert "has timed out progressing" in canary.message
