"""Idle culling of Workbenches: read the notebook server's last activity, decide whether it has
been idle for longer than the Workbench allows, and say why either way.

The decision is a pure function (:func:`decide_cull`). An activity endpoint that cannot be read
never leads to a stop: the condition says the activity is unknown, and the Workbench keeps running.
A culled Workbench carries the annotation ``kubeforge.io/culled-at`` (rather than a changed
``spec.stopped``, so that a GitOps tool that owns the spec does not fight the culler); removing the
annotation starts it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from kubeforge_crds import ConditionStatus
from kubeforge_crds.contracts.labels import CULLED_ANNOTATION
from kubeforge_operator.runtime.conditions import Observation

CULLED = "Culled"

DEFAULT_PROBE_PATH = "/api/status"


@dataclass(frozen=True)
class ActivityReport:
    """What the notebook server said about its last activity, or why it could not be read."""

    last_activity: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class CullDecision:
    cull: bool
    observation: Observation
    last_activity: datetime | None


def parse_timestamp(text: str) -> datetime:
    """Jupyter's ISO 8601 (``2026-11-23T07:31:35.712371Z``) as an aware UTC datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_activity(body: Any) -> datetime:
    """The ``last_activity`` of Jupyter's /api/status (or any JSON object with that field)."""
    if not isinstance(body, dict) or not isinstance(body.get("last_activity"), str):
        raise ValueError("the response has no last_activity timestamp")
    return parse_timestamp(body["last_activity"])


def read_activity(url: str, timeout: float = 3.0) -> ActivityReport:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
        return ActivityReport(last_activity=parse_activity(response.json()))
    except (httpx.HTTPError, ValueError) as exc:
        return ActivityReport(error=f"{url}: {exc}")


def _fmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide_cull(
    enabled: bool,
    idle_timeout: timedelta,
    report: ActivityReport,
    previous: datetime | None,
    now: datetime,
) -> CullDecision:
    """Whether to stop the Workbench now. Messages never mention ``now``, so an idle Workbench's
    status does not change (and is not rewritten) from one check to the next."""
    if not enabled:
        obs = Observation(CULLED, ConditionStatus.FALSE, "CullingDisabled", "culling is off")
        return CullDecision(False, obs, previous)
    if report.last_activity is None:
        obs = Observation(
            CULLED,
            ConditionStatus.FALSE,
            "ActivityUnknown",
            f"cannot read activity ({report.error}); a Workbench is never stopped while its "
            "activity is unknown",
        )
        return CullDecision(False, obs, previous)
    last = max(report.last_activity, previous) if previous else report.last_activity
    if now - last >= idle_timeout:
        obs = Observation(
            CULLED,
            ConditionStatus.TRUE,
            "IdleTimeout",
            f"no activity since {_fmt(last)}, longer than the idle timeout of {idle_timeout}",
        )
        return CullDecision(True, obs, last)
    obs = Observation(CULLED, ConditionStatus.FALSE, "Active", f"last activity {_fmt(last)}")
    return CullDecision(False, obs, last)


def culled_observation(culled_at: str) -> Observation:
    return Observation(
        CULLED,
        ConditionStatus.TRUE,
        "IdleTimeout",
        f"stopped by the idle culler at {culled_at}; remove the annotation {CULLED_ANNOTATION} "
        "to start it again",
    )
