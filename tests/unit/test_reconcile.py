"""The shared reconcile shape's pure parts: status computation and invalid-spec outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from kubeforge_crds import WORKBENCH, ConditionStatus
from kubeforge_crds.errors import field_errors
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.reconcile import (
    Outcome,
    accepted,
    compute_status,
    invalid_spec_outcome,
    reconcile_object,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _conds(status: dict) -> dict:
    return {c["type"]: c for c in status["conditions"]}


def test_invalid_spec_sets_accepted_and_ready_false_naming_fields() -> None:
    try:
        WORKBENCH.parse_spec({"image": "x", "culling": {"idleTimeout": "30s"}})
    except ValidationError as err:
        outcome = invalid_spec_outcome(field_errors(err))
    status = compute_status(WORKBENCH, {}, outcome, 4, T0)
    conds = _conds(status)
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "InvalidSpec"
    assert "spec.culling.idleTimeout: idleTimeout must be at least 1m" in conds["Ready"]["message"]
    assert conds["Accepted"]["status"] == "False"
    assert status["observedGeneration"] == 4
    assert status["phase"] == "Failed"


def test_status_is_unchanged_when_nothing_changed() -> None:
    outcome = Outcome(phase="Running", dependents=[accepted()], fields={"gpus": 1})
    first = compute_status(WORKBENCH, {}, outcome, 1, T0)
    again = compute_status(WORKBENCH, first, outcome, 1, T0 + timedelta(minutes=1))
    assert again == first  # so no status write happens


def test_observed_generation_and_fields_follow_the_outcome() -> None:
    before = compute_status(
        WORKBENCH, {}, Outcome("Starting", [accepted()], {"url": "http://a"}), 1, T0
    )
    outcome = Outcome(
        "Pending",
        [accepted(), Observation("Scheduled", ConditionStatus.FALSE, "Unschedulable", "no GPU")],
        {"gpus": 0},
    )
    after = compute_status(WORKBENCH, before, outcome, 2, T0 + timedelta(seconds=5))
    assert after["observedGeneration"] == 2
    assert after["phase"] == "Pending"
    assert after["gpus"] == 0
    assert after["url"] == "http://a"  # fields the outcome does not mention are kept
    conds = _conds(after)
    assert conds["Ready"]["reason"] == "Unschedulable"
    assert all(c["observedGeneration"] == 2 for c in after["conditions"])


class _StatusOnlyKube:
    """Takes the status write of one reconcile; any other call would be a bug here."""

    def __init__(self) -> None:
        self.patches: list[dict] = []
        self.events: list[str] = []

    def patch_status(self, kind: object, namespace: str, name: str, status: dict) -> str:
        self.patches.append(status)
        return "2"

    def record_event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


def test_a_name_admitted_before_the_rule_gets_ready_false_not_a_retry() -> None:
    """An object whose name its children cannot carry (created before the CRD had the rule)
    is reported at once, naming metadata.name; the reconciler is never called."""
    obj = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Workbench",
        "metadata": {"name": "1-" + "n" * 60, "namespace": "a", "generation": 1},
        "spec": {"image": "jupyter/minimal"},
    }
    kube = _StatusOnlyKube()

    def never(*_: object) -> Outcome:
        raise AssertionError("the kind's reconciler ran on an invalid object")

    report = reconcile_object(WORKBENCH, obj, kube, never, now=T0)  # type: ignore[arg-type]
    assert report.result == "invalid"
    ready = _conds(report.status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "metadata.name: at most 52 characters" in ready["message"]
    assert "metadata.name: must be a DNS-1035 label" in ready["message"]
    assert kube.patches
    assert kube.events == ["InvalidSpec"]


def test_an_owned_condition_a_pass_did_not_reach_is_unknown_not_stale() -> None:
    """A pass that stops early (here: a Secret went missing) leaves no condition of an earlier
    pass standing as if it were still true; one the outcome keeps on purpose stays."""
    running = Outcome(
        "Running",
        [
            accepted(),
            Observation("Scheduled", ConditionStatus.TRUE, "Scheduled", ""),
            Observation("ServerReady", ConditionStatus.TRUE, "Ready", ""),
        ],
        info=[Observation("Culled", ConditionStatus.FALSE, "Active", "")],
    )
    owned = ("Ready", "Accepted", "Scheduled", "ServerReady", "Culled")
    before = compute_status(WORKBENCH, {}, running, 1, T0, owned)
    missing = Observation("DataConnectionsReady", ConditionStatus.FALSE, "SecretNotFound", "s3")
    stopped_early = Outcome("Pending", [accepted(), missing], kept=("Culled",))
    after = _conds(compute_status(WORKBENCH, before, stopped_early, 2, T0, owned))
    for stale in ("Scheduled", "ServerReady"):
        assert after[stale]["status"] == "Unknown"
        assert after[stale]["reason"] == "NotReached"
        assert after[stale]["message"] == "not evaluated on this pass: SecretNotFound"
        assert after[stale]["observedGeneration"] == 2
    assert after["Culled"]["reason"] == "Active"  # kept
    assert after["Culled"]["observedGeneration"] == 1
    assert after["Ready"]["reason"] == "SecretNotFound"


def test_events_say_ready_or_why_not_but_not_a_first_unknown() -> None:
    """The first status of a starting object (Ready Unknown) posts no Event; becoming ready,
    a reason for not being ready, and each new such reason do."""
    obj = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Workbench",
        "metadata": {"name": "nb", "namespace": "a", "generation": 1},
        "spec": {"image": "jupyter/minimal"},
    }
    kube = _StatusOnlyKube()

    def passes(*observations: Observation) -> None:
        outcome = Outcome("Pending", [accepted(), *observations])
        report = reconcile_object(WORKBENCH, obj, kube, lambda *_: outcome, now=T0)  # type: ignore[arg-type]
        obj["status"] = report.status

    passes(Observation("ServerReady", ConditionStatus.UNKNOWN, "PodPending", "no pod yet"))
    passes(Observation("ServerReady", ConditionStatus.UNKNOWN, "Starting", "starting"))
    assert kube.events == []
    assert len(kube.patches) == 2  # the status itself is written each time
    passes(Observation("ServerReady", ConditionStatus.FALSE, "ImagePullBackOff", "no image"))
    passes(Observation("ServerReady", ConditionStatus.FALSE, "CrashLoopBackOff", "crashes"))
    passes(Observation("ServerReady", ConditionStatus.TRUE, "NotebookReady", "serving"))
    assert kube.events == ["ImagePullBackOff", "CrashLoopBackOff", "Ready"]
