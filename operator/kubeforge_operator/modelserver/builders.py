"""The InferenceService a ModelServer becomes (pure)."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

from kubernetes.utils.quantity import parse_quantity

from kubeforge_crds.contracts.serving import ENV_CPU_REQUEST, ISVC_API, builtin_runtime
from kubeforge_crds.modelserver import (
    ModelServerSpec,
    Revision,
)
from kubeforge_operator.modelserver.traffic import (
    CANARY_NAME,
    MODE_ANNOTATION,
    VISIBILITY_LABEL,
    Mode,
)
from kubeforge_operator.runtime.children import (
    child_metadata,
    pod_security_context,
    standard_labels,
)
from kubeforge_operator.runtime.placement import Placement

BASE_VOLUME = "kubeforge-base-model"
ADAPTER_VOLUME = "kubeforge-adapters"
PVC_ROOT = "/mnt/pvc"  # where the runtime (and the training Job) find pvc:// URIs


def cpu_millicores(cpu: str) -> str:
    """A CPU quantity in millicores, rounded up as the downward API rounds ``requests.cpu``
    with divisor ``1m``. Written as a plain value rather than a ``resourceFieldRef``: Knative
    (KServe's Serverless mode) refuses one unless its ``kubernetes.podspec-fieldref`` feature
    is turned on, and the operator knows the request it sets."""
    return str(math.ceil(parse_quantity(str(cpu)) * 1000))


def _env(rev: Revision, cpu: str) -> list[dict[str, str]]:
    env = [
        {"name": "KUBEFORGE_RUNTIME_REVISION", "value": rev.revision},
        {"name": "KUBEFORGE_RUNTIME_MODEL_FORMAT", "value": str(rev.model_format)},
        # the CPUs requested (no limit is set): the runtime sizes torch's threads by them, not
        # by the node's cores
        {"name": ENV_CPU_REQUEST, "value": cpu_millicores(cpu)},
    ]
    if rev.fault_injection:
        env += [
            {
                "name": "KUBEFORGE_RUNTIME_ERROR_RATE",
                "value": f"{rev.fault_injection.error_rate:g}",
            },
            {
                "name": "KUBEFORGE_RUNTIME_EXTRA_LATENCY_SECONDS",
                "value": f"{rev.fault_injection.extra_latency_seconds:g}",
            },
            {
                "name": "KUBEFORGE_RUNTIME_TOKEN_LATENCY_SECONDS",
                "value": f"{rev.fault_injection.token_latency_seconds:g}",
            },
        ]
        if rev.fault_injection.control:
            env.append({"name": "KUBEFORGE_RUNTIME_FAULT_CONTROL", "value": "true"})
    if rev.adapters:
        value = json.dumps(rev.adapters, sort_keys=True)
        env.append({"name": "KUBEFORGE_RUNTIME_ADAPTERS", "value": value})
    return env


def base_claim(rev: Revision) -> str | None:
    """The claim of a base model on a volume (``pvc://claim/path``). KServe mounts only the
    claim of ``storageUri``; a PEFT adapter's base may live on another claim or another path
    of the same one, where the runtime looks for it as the training Job does (under
    ``/mnt/pvc/<claim>``, the runtime's ``KUBEFORGE_PVC_ROOT``)."""
    return _claim(rev.base_model)


def _claim(uri: str | None) -> str | None:
    if not uri:
        return None
    parts = urlsplit(uri)
    return parts.netloc or None if parts.scheme == "pvc" else None


def volume_claims(rev: Revision) -> list[tuple[str, str]]:
    """(volume, claim) of each claim the runtime reads beside ``storageUri``: the base model's,
    then the adapters' (each mounted once, read-only, under ``/mnt/pvc/<claim>``)."""
    base = base_claim(rev)
    out = [(BASE_VOLUME, base)] if base else []
    extra = sorted({c for c in map(_claim, rev.adapters.values()) if c and c != base})
    return out + [(f"{ADAPTER_VOLUME}-{i}", claim) for i, claim in enumerate(extra)]


def _predictor(
    spec: ModelServerSpec, placement: Placement, rev: Revision, shadow_base: bool = False
) -> dict[str, Any]:
    """The fields of a predictor (stable or canary) that its revision decides. KServe builds
    the canary's pod from a copy of the stable predictor with the canary's non-empty fields
    over it: ``shadow_base`` (a canary without a base beside a stable one with it) mounts an
    empty directory instead, or the canary would keep the stable's claim."""
    gpus = placement.limits()
    # CPU requested, not capped: a CPU limit throttles the model's start (the LLM runtime's
    # imports take 33 s at a 300m limit, 10 s without) and its latency, which the canary's
    # gates measure; memory capped at the request, GPUs as requested
    requests = {"cpu": spec.resources.cpu, "memory": spec.resources.memory} | gpus
    model: dict[str, Any] = {
        "modelFormat": {"name": str(rev.model_format)},
        "runtime": rev.serving_runtime or builtin_runtime(str(rev.model_format)),
        "storageUri": rev.uri,
        "env": _env(rev, spec.resources.cpu),
        "resources": {"requests": requests, "limits": {"memory": spec.resources.memory} | gpus},
    }
    fields: dict[str, Any] = {"model": model}
    if placement.pod_labels():
        fields["labels"] = placement.pod_labels()  # KServe puts them on the predictor's pods
    if rev.serving_runtime is None:
        # the built-in runtimes run as kubeforge's pods do, uid 1000 with group 100 (Jupyter's
        # jovyan and users): what a training Job or a notebook wrote on a volume is readable;
        # another ServingRuntime keeps the user its image expects
        fields["securityContext"] = pod_security_context()
    claims = volume_claims(rev)
    if claims:
        model["volumeMounts"] = [
            {"name": volume, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True}
            for volume, claim in claims
        ]
        volumes = [
            {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            for volume, claim in claims
        ]
        return fields | {"volumes": volumes}
    if not shadow_base:
        return fields
    path = f"{PVC_ROOT}/.no-base-model"
    model["volumeMounts"] = [{"name": BASE_VOLUME, "mountPath": path, "readOnly": True}]
    return fields | {"volumes": [{"name": BASE_VOLUME, "emptyDir": {}}]}


def build_inference_service(
    owner: dict[str, Any],
    spec: ModelServerSpec,
    placement: Placement,
    served: Revision,
    canary_percent: int | None,
    logger_url: str | None = None,
    mode: Mode = Mode.SERVERLESS,
    stable: Revision | None = None,
    hand_over: bool = False,
    draining: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The InferenceService serving ``served``; with ``canary_percent``, ``served`` is a canary
    of ``stable``: in Serverless mode the predictor with canaryTrafficPercent (Knative keeps
    the last rolled-out revision for the rest), in Standard mode ``spec.canary`` beside the
    stable predictor (kubeforge's HTTPRoute splits the traffic, so the InferenceService is
    cluster-local). With ``hand_over`` (Standard mode, just promoted), the stable predictor
    serves ``served`` and the canary, the same version, keeps the traffic until KServe has rolled
    the stable predictor's pods; ``draining`` is a canary that just lost its traffic, kept as
    it is until the Gateway has surely stopped sending it requests. With ``logger_url``, every
    request and response is logged there (a DriftMonitor's drift service)."""
    name = owner["metadata"]["name"]
    in_canary = canary_percent is not None and canary_percent < 100
    # Standard mode keeps the canary beside the stable predictor up to its last step (100%:
    # the route sends it everything) until the analysis promotes it
    standard_canary = (
        mode == Mode.STANDARD
        and canary_percent is not None
        and stable is not None
        and stable.revision != served.revision
    )
    first = stable if standard_canary and stable is not None else served
    predictor: dict[str, Any] = {
        "minReplicas": spec.replicas.min,
        "maxReplicas": spec.replicas.max,
        **_predictor(spec, placement, first),
        **placement.pod_fields(),
    }
    if logger_url:
        predictor["logger"] = {"mode": "all", "url": logger_url}
    body: dict[str, Any] = {"predictor": predictor}
    meta = child_metadata(owner, name, standard_labels("modelserver", name, "inference"))
    meta["annotations"] = {
        "serving.kserve.io/enable-prometheus-scraping": "true",
        MODE_ANNOTATION: str(mode),
    }
    if mode == Mode.SERVERLESS:
        if in_canary:
            predictor["canaryTrafficPercent"] = canary_percent
    else:
        meta["labels"][VISIBILITY_LABEL] = "cluster-local"  # kubeforge's HTTPRoute is the way in
        if first is not served or hand_over:
            # the canary lands where the stable predictor does (a GPU node for a GPU model)
            shadow = bool(volume_claims(first))
            canary = {
                "name": CANARY_NAME,
                **_predictor(spec, placement, served, shadow_base=shadow),
                **placement.pod_fields(),
            }
            share = 100 if hand_over else canary_percent
            body["canary"] = [{"predictor": canary, "trafficPercent": share}]
        elif draining:
            body["canary"] = draining
    return {"apiVersion": ISVC_API, "kind": "InferenceService", "metadata": meta, "spec": body}
