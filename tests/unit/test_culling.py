"""The idle-culling decision: pure, and never a stop on unknown activity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubeforge_crds import ConditionStatus
from kubeforge_operator.workbench.culling import ActivityReport, decide_cull, parse_activity

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_idle_longer_than_the_timeout_is_culled_with_the_reason() -> None:
    report = ActivityReport(last_activity=NOW - timedelta(hours=2))
    decision = decide_cull(True, HOUR, report, None, NOW)
    assert decision.cull
    assert decision.observation.status == ConditionStatus.TRUE
    assert decision.observation.reason == "IdleTimeout"
    assert "no activity since 2026-11-23T10:00:00Z" in decision.observation.message


def test_recent_activity_keeps_it_running() -> None:
    report = ActivityReport(last_activity=NOW - timedelta(minutes=10))
    decision = decide_cull(True, HOUR, report, None, NOW)
    assert not decision.cull
    assert decision.observation.reason == "Active"
    assert decision.last_activity == NOW - timedelta(minutes=10)


def test_unreachable_activity_never_stops_even_when_long_idle() -> None:
    long_ago = NOW - timedelta(days=3)
    decision = decide_cull(True, HOUR, ActivityReport(error="connection refused"), long_ago, NOW)
    assert not decision.cull
    assert decision.observation.reason == "ActivityUnknown"
    assert "connection refused" in decision.observation.message
    assert decision.last_activity == long_ago


def test_disabled_culling_never_stops() -> None:
    report = ActivityReport(last_activity=NOW - timedelta(days=3))
    assert not decide_cull(False, HOUR, report, None, NOW).cull


def test_the_newer_of_reported_and_recorded_activity_counts() -> None:
    # a restarted server reports its start; an older report never moves activity backwards
    recorded = NOW - timedelta(minutes=5)
    report = ActivityReport(last_activity=NOW - timedelta(hours=3))
    decision = decide_cull(True, HOUR, report, recorded, NOW)
    assert not decision.cull
    assert decision.last_activity == recorded


def test_the_message_does_not_change_while_idle() -> None:
    report = ActivityReport(last_activity=NOW - timedelta(minutes=10))
    first = decide_cull(True, HOUR, report, None, NOW).observation
    later = decide_cull(True, HOUR, report, None, NOW + timedelta(minutes=20)).observation
    assert first == later  # so an idle Workbench's status is not rewritten every minute


def test_parse_jupyter_status() -> None:
    body = {"last_activity": "2026-11-23T07:31:35.712371Z", "started": "x", "kernels": 0}
    assert parse_activity(body) == datetime(2026, 11, 23, 7, 31, 35, 712371, tzinfo=UTC)


@pytest.mark.parametrize("body", [{}, [], {"last_activity": 5}, {"last_activity": "yesterday"}])
def test_parse_rejects_what_is_not_an_activity_report(body: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message comes from several parsers
        parse_activity(body)
