"""The traffic split of a ModelServer (pure): KServe's mode, the InferenceService in each mode,
the operator's HTTPRoute and what its status says."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeforge_crds import MODELSERVER, ConditionStatus
from kubeforge_operator.modelserver.builders import build_inference_service
from kubeforge_operator.modelserver.revisions import desired_revision
from kubeforge_operator.modelserver.status import canary_observation, isvc_ready
from kubeforge_operator.modelserver.traffic import (
    KServeDefaults,
    Mode,
    build_route,
    canary_weight,
    deployment_mode,
    drained,
    hands_over,
    kserve_defaults,
    parse_gateway,
    route_observation,
    weights_since,
)
from kubeforge_operator.runtime.placement import Placement

OWNER = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "ModelServer",
    "metadata": {"name": "bot", "namespace": "team-a", "uid": "u-1"},
}
GATEWAY = ("kserve", "kserve-ingress-gateway")
SINCE = "2026-11-30T12:00:00Z"
SPEC = MODELSERVER.parse_spec({"model": {"uri": "pvc://m/v2"}, "replicas": {"min": 2, "max": 3}})
STABLE = desired_revision("pvc://m/v1", SPEC, None)
CANARY = desired_revision("pvc://m/v2", SPEC, None)


def _config(mode: str, **ingress: Any) -> dict[str, str]:
    return {"deploy": json.dumps({"defaultDeploymentMode": mode}), "ingress": json.dumps(ingress)}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Standard", Mode.STANDARD),
        ("RawDeployment", Mode.STANDARD),
        ("Serverless", Mode.SERVERLESS),
        ("Knative", Mode.SERVERLESS),
    ],
)
def test_kserve_modes_old_and_new_names(name: str, expected: Mode) -> None:
    assert deployment_mode("auto", kserve_defaults(_config(name))) == expected


def test_the_operator_setting_wins_over_kserve() -> None:
    defaults = kserve_defaults(_config("Serverless"))
    assert deployment_mode("Standard", defaults) == Mode.STANDARD
    assert deployment_mode("auto", defaults) == Mode.SERVERLESS


@pytest.mark.parametrize(
    "data",
    [None, {}, {"deploy": "not json"}, {"deploy": '["a list"]'}, _config("ModelMesh")],
)
def test_unreadable_kserve_config_means_standard(data: dict[str, str] | None) -> None:
    """Where KServe's config says nothing usable, Standard: the mode in which a canary gets only
    the traffic the operator's route gives it."""
    assert deployment_mode("auto", kserve_defaults(data)) == Mode.STANDARD


def test_kserve_domain_is_read() -> None:
    defaults = kserve_defaults(_config("Standard", ingressDomain="models.corp"))
    assert defaults.domain == "models.corp"
    assert kserve_defaults(None) == KServeDefaults(None, None, None)


def test_unknown_mode_setting_and_gateway_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown KServe deployment mode"):
        deployment_mode("Turbo", kserve_defaults(None))
    with pytest.raises(ValueError, match="not namespace/name"):
        parse_gateway("just-a-name")
    assert parse_gateway("kserve/gw") == ("kserve", "gw")


def _isvc(mode: Mode, canary_percent: int | None) -> dict[str, Any]:
    return build_inference_service(
        OWNER, SPEC, Placement(), CANARY, canary_percent, None, mode, STABLE
    )


def _uri(predictor: dict[str, Any]) -> str:
    return str(predictor["model"]["storageUri"])


def test_standard_mode_canary_is_kserve_spec_canary_beside_the_stable_predictor() -> None:
    isvc = _isvc(Mode.STANDARD, 10)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # kubeforge's route is the way in: KServe makes none for it
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    predictor = isvc["spec"]["predictor"]
    assert _uri(predictor) == "pvc://m/v1"
    assert "canaryTrafficPercent" not in predictor  # ignored by KServe in Standard mode
    [canary] = isvc["spec"]["canary"]
    assert canary["trafficPercent"] == 10
    assert canary["predictor"]["name"] == "canary"
    assert _uri(canary["predictor"]) == "pvc://m/v2"
    # KServe refuses replica settings on a canary (they come from the stable predictor)
    assert not {"minReplicas", "maxReplicas"} & set(canary["predictor"])


def test_standard_mode_without_a_rollout_serves_one_predictor() -> None:
    isvc = _isvc(Mode.STANDARD, None)
    assert _uri(isvc["spec"]["predictor"]) == "pvc://m/v2"
    assert "canary" not in isvc["spec"]


def test_serverless_mode_canary_is_canary_traffic_percent() -> None:
    isvc = _isvc(Mode.SERVERLESS, 10)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert "networking.kserve.io/visibility" not in isvc["metadata"]["labels"]
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert _uri(isvc["spec"]["predictor"]) == "pvc://m/v2"
    assert "canary" not in isvc["spec"]


def test_route_weights_and_owner() -> None:
    route = build_route(OWNER, {"a": "b"}, GATEWAY, "bot-team-a.example.com", 30, SINCE)
    assert route["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert weights_since(route) == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    [parent] = route["spec"]["parentRefs"]
    assert (parent["namespace"], parent["name"], parent["kind"]) == (*GATEWAY, "Gateway")
    assert route["spec"]["hostnames"] == ["bot-team-a.example.com"]
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("bot-predictor", 70),
        ("bot-canary-predictor", 30),
    ]


def test_route_without_canary_share_has_only_the_stable_backend() -> None:
    route = build_route(OWNER, {}, GATEWAY, "h", 0, SINCE)
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["bot-predictor"]


def _with_canary(ready: bool) -> dict[str, Any]:
    return {"status": {"canaryStatuses": [{"name": "canary", "ready": ready}]}}


def test_canary_gets_traffic_only_once_its_pods_run_its_version() -> None:
    rev = CANARY.revision
    rolled = _deployment(rev, updated=1, available=1)
    assert canary_weight(_with_canary(False), rolled, rev, 10) == 0  # KServe: not ready
    assert canary_weight(None, rolled, rev, 10) == 0
    assert canary_weight(_with_canary(True), rolled, rev, 10) == 10
    assert canary_weight(_with_canary(True), rolled, rev, None) == 0  # no rollout, rolled back
    # KServe still reports the previous canary ready, but its pods run another version
    previous = _deployment(STABLE.revision, updated=1, available=1)
    assert canary_weight(_with_canary(True), previous, rev, 10) == 0
    assert canary_weight(_with_canary(True), _deployment(rev, 1, 0), rev, 10) == 0
    assert canary_weight(_with_canary(True), None, rev, 10) == 0


def _route(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "status": {
            "parents": [
                {
                    "parentRef": {"namespace": "kserve", "name": "kserve-ingress-gateway"},
                    "conditions": [
                        {"type": t, "status": s, "reason": r, "message": f"{t} says {r}"}
                        for t, s, r in conditions
                    ],
                }
            ]
        }
    }


def test_route_observations() -> None:
    ok = route_observation(
        _route(("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs")),
        GATEWAY,
        True,
    )
    assert (ok.status, ok.reason) == (ConditionStatus.TRUE, "Accepted")
    refused = route_observation(
        _route(("Accepted", "True", "Accepted"), ("ResolvedRefs", "False", "BackendNotFound")),
        GATEWAY,
        True,
    )
    assert (refused.status, refused.reason) == (ConditionStatus.FALSE, "BackendNotFound")
    assert "ResolvedRefs=False" in refused.message
    missing = route_observation(None, GATEWAY, False)
    assert (missing.status, missing.reason) == (ConditionStatus.FALSE, "GatewayNotFound")
    assert "kserve/kserve-ingress-gateway" in missing.message
    waiting = route_observation({"status": {}}, GATEWAY, True)
    assert (waiting.status, waiting.reason) == (ConditionStatus.UNKNOWN, "WaitingForGateway")


def _kserve_status(**conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "bot", "generation": 3},
        "status": {
            "observedGeneration": 1,  # KServe v0.20 Standard: the Deployment's generation
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": m}
                for t, (s, r, m) in conditions.items()
            ],
        },
    }


def test_kserve_conditions_reach_the_modelserver() -> None:
    isvc = _kserve_status(
        Ready=("False", "", ""),
        PredictorReady=("False", "ProgressDeadlineExceeded", "pods crash"),
        IngressReady=("True", "", ""),
        CanaryPredictorReady=("False", "predictor Deployment NotReady", "canary not ready"),
    )
    ready = isvc_ready(isvc, Mode.STANDARD)
    assert (ready.status, ready.reason) == (ConditionStatus.FALSE, "ProgressDeadlineExceeded")
    assert "PredictorReady=False" in ready.message
    assert "pods crash" in ready.message
    canary = canary_observation(isvc)
    assert canary is not None
    assert (canary.status, canary.reason) == (ConditionStatus.FALSE, "PredictorDeploymentNotReady")


def test_standard_mode_ignores_kserves_observed_generation() -> None:
    isvc = _kserve_status(Ready=("True", "", ""))
    assert isvc_ready(isvc, Mode.STANDARD).status == ConditionStatus.TRUE
    # Serverless: observedGeneration is the InferenceService's own, and it is behind
    assert isvc_ready(isvc, Mode.SERVERLESS).reason == "WaitingForKServe"


def test_standard_mode_canary_at_its_last_step_stays_beside_the_stable_predictor() -> None:
    """At 100% the route sends the canary everything; it is promoted (and the stable predictor
    re-pointed) only after that step's analysis."""
    isvc = _isvc(Mode.STANDARD, 100)
    assert _uri(isvc["spec"]["predictor"]) == "pvc://m/v1"
    assert isvc["spec"]["canary"][0]["trafficPercent"] == 100
    route = build_route(OWNER, {}, GATEWAY, "h", 100, SINCE)
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("bot-predictor", 0),
        ("bot-canary-predictor", 100),
    ]


def _deployment(revision: str, updated: int, available: int) -> dict[str, Any]:
    env = [{"name": "KUBEFORGE_RUNTIME_REVISION", "value": revision}]
    return {
        "metadata": {"generation": 2},
        "spec": {
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "kserve-container", "env": env}]}},
        },
        "status": {
            "observedGeneration": 2,
            "updatedReplicas": updated,
            "availableReplicas": available,
        },
    }


def test_after_a_promotion_the_canary_keeps_the_traffic_until_the_stable_pods_rolled() -> None:
    """Re-pointing the stable predictor restarts its pods: until they run the promoted
    version, its old pods would answer, so the canary (the same version) keeps everything."""
    isvc = _isvc(Mode.STANDARD, 30)  # the canary runs CANARY
    rev = CANARY.revision
    rolling = _deployment(STABLE.revision, updated=0, available=1)
    assert hands_over(isvc, rolling, rev, None)
    assert hands_over(isvc, _deployment(rev, updated=1, available=0), rev, None)
    assert not hands_over(isvc, _deployment(rev, updated=1, available=1), rev, None)
    # a rollback (served is the stable version, not the canary's) hands nothing over
    assert not hands_over(isvc, rolling, STABLE.revision, None)
    # during a rollout the canary has its step's share, not a hand-over
    assert not hands_over(isvc, rolling, rev, 30)
    handing = build_inference_service(
        OWNER, SPEC, Placement(), CANARY, None, None, Mode.STANDARD, CANARY, hand_over=True
    )
    assert _uri(handing["spec"]["predictor"]) == "pvc://m/v2"
    assert handing["spec"]["canary"][0]["trafficPercent"] == 100
    assert _uri(handing["spec"]["canary"][0]["predictor"]) == "pvc://m/v2"


def test_a_canary_that_lost_its_traffic_is_drained_before_kserve_removes_it() -> None:
    """The Gateway applies a route change a moment after it is written: the canary's pods
    stay (as they are) until the route has sent them nothing for DRAIN_SECONDS."""
    now = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)
    just_now = build_route(OWNER, {}, GATEWAY, "h", 0, "2026-11-30T12:00:25Z")
    long_ago = build_route(OWNER, {}, GATEWAY, "h", 0, "2026-11-30T12:00:00Z")
    still_sending = build_route(OWNER, {}, GATEWAY, "h", 30, "2026-11-30T12:00:00Z")
    assert not drained(just_now, now)
    assert drained(long_ago, now)
    assert not drained(still_sending, now)
    assert not drained(None, now)
    canary = _isvc(Mode.STANDARD, 30)["spec"]["canary"]
    kept = build_inference_service(
        OWNER, SPEC, Placement(), STABLE, None, None, Mode.STANDARD, STABLE, draining=canary
    )
    assert kept["spec"]["canary"] == canary
    assert _uri(kept["spec"]["predictor"]) == "pvc://m/v1"


def test_a_peft_base_on_a_volume_is_mounted_read_only_where_the_runtime_looks() -> None:
    """KServe mounts only the claim of storageUri; the adapter's base (the FineTuneJob's
    spec.baseModel) on a claim is mounted under /mnt/pvc/<claim>, on the canary too."""
    peft = MODELSERVER.parse_spec(
        {"model": {"fineTuneJob": "bot-v2"}, "runtime": {"modelFormat": "peft"}}
    )
    stable = desired_revision("pvc://models/bot/v1", peft, "bot-v1", "pvc://models/tiny-gpt2")
    canary = desired_revision("pvc://models/bot/v2", peft, "bot-v2", "pvc://bases/gpt2/")
    isvc = build_inference_service(
        OWNER, peft, Placement(), canary, 10, None, Mode.STANDARD, stable
    )
    for predictor, claim in (
        (isvc["spec"]["predictor"], "models"),
        (isvc["spec"]["canary"][0]["predictor"], "bases"),
    ):
        [volume] = predictor["volumes"]
        assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
        [mount] = predictor["model"]["volumeMounts"]
        assert mount == {"name": volume["name"], "mountPath": f"/mnt/pvc/{claim}", "readOnly": True}
        # as every kubeforge pod: what the training Job wrote there (group users) is readable
        assert predictor["securityContext"]["fsGroup"] == 100
        assert predictor["securityContext"]["runAsUser"] == 1000


@pytest.mark.parametrize("base", [None, "hf://sshleifer/tiny-gpt2", "s3://bucket/gpt2"])
def test_a_base_elsewhere_mounts_nothing(base: str | None) -> None:
    served = desired_revision("pvc://models/bot/v1", SPEC, "bot-v1", base)
    predictor = build_inference_service(OWNER, SPEC, Placement(), served, None)["spec"]["predictor"]
    assert "volumes" not in predictor
    assert "volumeMounts" not in predictor["model"]


@pytest.mark.parametrize(
    ("model_format", "runtime"),
    [("sklearn", "kubeforge"), ("transformers", "kubeforge-llm"), ("peft", "kubeforge-llm")],
)
def test_each_format_goes_to_the_built_in_runtime_whose_image_can_load_it(
    model_format: str, runtime: str
) -> None:
    """scikit-learn models on the slim runtime image; LMs and adapters where torch is."""
    spec = MODELSERVER.parse_spec(
        {"model": {"uri": "pvc://m/v1"}, "runtime": {"modelFormat": model_format}}
    )
    served = desired_revision("pvc://m/v1", spec, None)
    isvc = build_inference_service(OWNER, spec, Placement(), served, None)
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime
    named = MODELSERVER.parse_spec(
        {
            "model": {"uri": "pvc://m/v1"},
            "runtime": {"modelFormat": model_format, "servingRuntime": "vllm"},
        }
    )
    mine = build_inference_service(
        OWNER, named, Placement(), desired_revision("pvc://m/v1", named, None), None
    )
    assert mine["spec"]["predictor"]["model"]["runtime"] == "vllm"


def test_revisions_keep_their_digest_across_the_token_latency_field() -> None:
    """The digest as the operator computed it before tokenLatencySeconds existed: upgrading
    the operator must not start a rollout of an unchanged model."""
    import hashlib

    from kubeforge_operator.modelserver.revisions import revision_id

    faulty = MODELSERVER.parse_spec(
        {"model": {"uri": "pvc://m/v1"}, "runtime": {"faultInjection": {"errorRate": 0.5}}}
    )
    before = {
        "uri": "pvc://m/v1",
        "modelFormat": "transformers",
        "servingRuntime": None,
        "faults": {"errorRate": 0.5, "extraLatencySeconds": 0.0},
    }
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
    assert revision_id("pvc://m/v1", faulty) == "r" + digest
    slower = MODELSERVER.parse_spec(
        {
            "model": {"uri": "pvc://m/v1"},
            "runtime": {"faultInjection": {"tokenLatencySeconds": 0.1}},
        }
    )
    assert revision_id("pvc://m/v1", slower) != revision_id("pvc://m/v1", faulty)
    controlled = MODELSERVER.parse_spec(
        {
            "model": {"uri": "pvc://m/v1"},
            "runtime": {"faultInjection": {"errorRate": 0.5, "control": True}},
        }
    )
    assert revision_id("pvc://m/v1", controlled) != revision_id("pvc://m/v1", faulty)


def test_a_canary_without_a_base_does_not_keep_the_stable_s_claim() -> None:
    """KServe lays the canary's non-empty fields over a copy of the stable predictor: a canary
    served from a plain model URI mounts an empty directory where the stable has its base."""
    peft = MODELSERVER.parse_spec({"model": {"uri": "pvc://models/bot/v2"}})
    stable = desired_revision("pvc://models/bot/v1", peft, "bot-v1", "pvc://models/tiny-gpt2")
    canary = desired_revision("pvc://models/bot/v2", peft, None)
    isvc = build_inference_service(
        OWNER, peft, Placement(), canary, 10, None, Mode.STANDARD, stable
    )
    predictor = isvc["spec"]["canary"][0]["predictor"]
    [volume] = predictor["volumes"]
    assert volume == {"name": "kubeforge-base-model", "emptyDir": {}}
    assert predictor["model"]["volumeMounts"][0]["name"] == "kubeforge-base-model"
    # with no base anywhere, nothing is mounted
    plain = build_inference_service(
        OWNER, peft, Placement(), canary, 10, None, Mode.STANDARD, desired_revision(
            "pvc://models/bot/v1", peft, None
        ),
    )  # fmt: skip
    assert "volumes" not in plain["spec"]["canary"][0]["predictor"]


def test_another_serving_runtime_keeps_the_user_its_image_expects() -> None:
    vllm = MODELSERVER.parse_spec(
        {"model": {"uri": "pvc://m/v1"}, "runtime": {"servingRuntime": "vllm"}}
    )
    isvc = build_inference_service(
        OWNER, vllm, Placement(), desired_revision("pvc://m/v1", vllm, None), None
    )
    assert "securityContext" not in isvc["spec"]["predictor"]
    builtin = build_inference_service(OWNER, SPEC, Placement(), STABLE, None)
    assert builtin["spec"]["predictor"]["securityContext"]["runAsUser"] == 1000


def test_adapters_are_named_to_the_runtime_and_their_claims_mounted_once() -> None:
    """Several adapters on one base: the runtime gets them by name, and each claim they live on
    is mounted once where the runtime looks (the base's claim is already there)."""
    base = MODELSERVER.parse_spec(
        {
            "model": {"uri": "pvc://models/base"},
            "adapters": [
                {"name": "tickets", "uri": "pvc://models/tickets/v1"},
                {"name": "billing", "uri": "pvc://adapters/billing/v3"},
            ],
        }
    )
    adapters = {"tickets": "pvc://models/tickets/v1", "billing": "pvc://adapters/billing/v3"}
    served = desired_revision("pvc://models/base", base, None, "pvc://models/x", adapters)
    predictor = build_inference_service(OWNER, base, Placement(), served, None)["spec"]["predictor"]
    env = {e["name"]: e["value"] for e in predictor["model"]["env"]}
    assert json.loads(env["KUBEFORGE_RUNTIME_ADAPTERS"]) == adapters
    claims = [v["persistentVolumeClaim"]["claimName"] for v in predictor["volumes"]]
    assert claims == ["models", "adapters"]
    mounts = [m["mountPath"] for m in predictor["model"]["volumeMounts"]]
    assert mounts == ["/mnt/pvc/models", "/mnt/pvc/adapters"]
    # a new version of one adapter is a new revision; the same ones in another order are not
    moved = dict(adapters, billing="pvc://adapters/billing/v4")
    assert desired_revision("pvc://models/base", base, None, None, moved).revision != (
        served.revision
    )
    again = dict(reversed(adapters.items()))
    assert desired_revision("pvc://models/base", base, None, None, again).revision == (
        served.revision
    )
    # without adapters, the digest is the one the operator always gave
    plain = desired_revision("pvc://models/base", base, None)
    assert plain.revision == desired_revision("pvc://models/base", SPEC, None).revision
