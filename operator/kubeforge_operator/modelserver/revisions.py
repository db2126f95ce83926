"""Revisions: what is served (model URI, format, runtime, injected faults), named by a digest
(``r<10 hex>``). The same inputs always give the same revision; resources and replicas are not
part of it (they apply in place)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from kubeforge_crds.modelserver import (
    ModelServerSpec,
    Revision,
)


def revision_id(uri: str, spec: ModelServerSpec, adapters: dict[str, str] | None = None) -> str:
    """Digest of what is served; the same inputs always give the same revision."""
    faults = spec.runtime.fault_injection.to_wire() if spec.runtime.fault_injection else None
    for added_later in ("tokenLatencySeconds", "control"):
        if faults is not None and not faults.get(added_later):
            # unset, a field added later leaves the digest as it was (no rollout of the same
            # model when the operator is upgraded)
            faults.pop(added_later, None)
    what: dict[str, Any] = {
        "uri": uri,
        "modelFormat": str(spec.runtime.model_format),
        "servingRuntime": spec.runtime.serving_runtime,
        "faults": faults,
    }
    if adapters:  # added later: without adapters the digest is as it was
        what["adapters"] = dict(sorted(adapters.items()))
    return "r" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def desired_revision(
    uri: str,
    spec: ModelServerSpec,
    fine_tune_job: str | None,
    base_model: str | None = None,
    adapters: dict[str, str] | None = None,
) -> Revision:
    """The revision of ``uri`` (with ``adapters``, name -> version URI, loaded on it);
    ``base_model`` (the FineTuneJob's base) is not part of its digest: the version's own lineage
    names it already."""
    return Revision(
        revision=revision_id(uri, spec, adapters),
        uri=uri,
        traffic_percent=0,
        model_format=spec.runtime.model_format,
        serving_runtime=spec.runtime.serving_runtime,
        fault_injection=spec.runtime.fault_injection,
        fine_tune_job=fine_tune_job,
        base_model=base_model,
        adapters=dict(adapters or {}),
    )


def with_traffic(rev: Revision, traffic: int) -> Revision:
    return rev.model_copy(update={"traffic_percent": traffic})


def traffic_split(stable: int, canary: int | None) -> str:
    return f"{stable}/{canary}" if canary is not None else f"{stable}/0"


def evaluation_job_name(name: str, candidate: str, stable: str, started: datetime) -> str:
    """The evaluation Job of one rollout: of ``candidate`` against ``stable``, started then.
    A new rollout (even of a revision evaluated before, or against another stable version) gets
    a Job of its own, never an old one's result; 45 + 6 + 10 characters at most."""
    what = f"{candidate}/{stable}/{started.isoformat()}"
    return f"{name}-eval-{hashlib.sha256(what.encode()).hexdigest()[:10]}"
