"""A ModelServer under a Kueue queue: its predictor pods carry the queue label, and a predictor
Kueue holds back says where it waits (pure builders and status)."""

from __future__ import annotations

from kubeforge_crds.common import QueueStatus
from kubeforge_crds.modelserver import ModelServerPhase, ModelServerSpec, Revision
from kubeforge_operator.modelserver.builders import build_inference_service
from kubeforge_operator.modelserver.conditions import ISVC_READY
from kubeforge_operator.modelserver.status import queued
from kubeforge_operator.runtime.conditions import ConditionStatus, Observation
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.queueing import QUEUE_POLL_SECONDS
from kubeforge_operator.runtime.reconcile import Outcome

OWNER = {
    "apiVersion": "kubeforge.io/v1alpha1",
    "kind": "ModelServer",
    "metadata": {"name": "bot", "namespace": "vision", "uid": "u-1"},
}
SPEC = ModelServerSpec.model_validate({"model": {"uri": "s3://m/v1"}, "queueName": "default"})
REV = Revision(revision="r1", uri="s3://m/v1", traffic_percent=100)
QUEUE = QueueStatus(
    local_queue="default",
    cluster_queue="vision",
    position=2,
    reason="Pending",
    message="insufficient unused quota for nvidia.com/gpu in flavor a100, 1 more needed",
)


def test_the_predictor_pods_carry_the_queue_label_and_none_without_a_queue() -> None:
    placement = Placement(gpus=1, queue_name="default")
    isvc = build_inference_service(OWNER, SPEC, placement, REV, None)
    assert isvc["spec"]["predictor"]["labels"] == {"kueue.x-k8s.io/queue-name": "default"}
    canary = build_inference_service(OWNER, SPEC, placement, REV, 10)
    assert canary["spec"]["predictor"]["labels"] == {"kueue.x-k8s.io/queue-name": "default"}
    plain = build_inference_service(OWNER, SPEC, Placement(gpus=1), REV, None)
    assert "labels" not in plain["spec"]["predictor"]


def _outcome(phase: str) -> Outcome:
    waiting = Observation(ISVC_READY, ConditionStatus.FALSE, "PredictorNotReady", "")
    return Outcome(phase=phase, dependents=[waiting], fields={"gpus": 0})


def test_a_first_version_waiting_for_quota_is_queued_with_its_position() -> None:
    out = queued(_outcome(ModelServerPhase.PENDING), QUEUE)
    assert out.phase == ModelServerPhase.QUEUED
    assert out.fields["queue"]["position"] == 2
    [isvc] = out.dependents
    assert (isvc.status, isvc.reason) == (ConditionStatus.FALSE, "Queued")
    assert "LocalQueue default (ClusterQueue vision), position 2" in isvc.message
    assert "1 more needed" in isvc.message
    assert out.requeue_after == QUEUE_POLL_SECONDS


def test_a_canary_waiting_for_quota_leaves_the_serving_phase_and_says_where() -> None:
    out = queued(_outcome(ModelServerPhase.PROGRESSING), QUEUE)
    assert out.phase == ModelServerPhase.PROGRESSING
    assert out.dependents[0].reason == "PredictorNotReady"
    assert out.fields["queue"]["clusterQueue"] == "vision"
