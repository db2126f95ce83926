"""merge_patch: the status write removes what the new status no longer has."""

from __future__ import annotations

from typing import Any

import pytest

from kubeforge_operator.runtime.reconcile import merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386's reference algorithm, to check the patch does what the apiserver will do."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a": 1, "rollout": {"step": 1}}, {"a": 1}),
        (
            {"stable": {"revision": "r1", "faultInjection": {"errorRate": 0.5}}},
            {"stable": {"revision": "r2"}},
        ),
        ({"decisions": [1, 2]}, {"decisions": [2, 3]}),
        ({}, {"phase": "Ready"}),
        ({"phase": "Ready", "x": {"y": {"z": 1}}}, {"phase": "Ready", "x": {"y": {}}}),
    ],
)
def test_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new


def test_unchanged_fields_are_not_sent() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 2}, "d": 3}) == {"d": 3}
    assert merge_patch({"rollout": {"step": 1}}, {}) == {"rollout": None}
