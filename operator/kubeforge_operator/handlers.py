"""kopf glue: every kind is reconciled by the same level-based function on create, update,
resume and a slow timer. The decorators stay thin; the work is in ``reconcile_object`` and each
kind's ``reconcile_<kind>``."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

import kopf

from kubeforge_crds import DRIFTMONITOR, FINETUNEJOB, MODELSERVER, WORKBENCH, KindInfo
from kubeforge_operator.constants import ANNOTATION_PREFIX, DIFFBASE_ANNOTATION, FINALIZER
from kubeforge_operator.driftmonitor import reconcile_driftmonitor
from kubeforge_operator.finetunejob import reconcile_finetunejob
from kubeforge_operator.kube import Kube
from kubeforge_operator.metrics import OBJECT_PHASES
from kubeforge_operator.modelserver import reconcile_modelserver
from kubeforge_operator.reconcile import Reconciler, reconcile_object
from kubeforge_operator.settings import get_settings
from kubeforge_operator.workbench import WORKBENCH_LABEL, reconcile_workbench

log = logging.getLogger(__name__)

RECONCILERS: dict[str, tuple[KindInfo, Reconciler]] = {
    WORKBENCH.kind: (WORKBENCH, reconcile_workbench),
    FINETUNEJOB.kind: (FINETUNEJOB, reconcile_finetunejob),
    MODELSERVER.kind: (MODELSERVER, reconcile_modelserver),
    DRIFTMONITOR.kind: (DRIFTMONITOR, reconcile_driftmonitor),
}

_kube: Kube | None = None
_locks: defaultdict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
SETTINGS = get_settings()


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key=DIFFBASE_ANNOTATION
    )
    settings.watching.server_timeout = SETTINGS.watch_server_timeout
    settings.watching.client_timeout = SETTINGS.watch_client_timeout
    settings.watching.connect_timeout = SETTINGS.watch_connect_timeout
    settings.posting.level = logging.WARNING  # our own Events are posted by reconcile_object
    settings.execution.max_workers = 8


def _reconcile(kind_name: str, body: kopf.Body) -> None:
    _reconcile_key(kind_name, body.metadata.namespace or "", body.metadata.name or "")


def _reconcile_key(kind_name: str, namespace: str, name: str) -> None:
    kind, reconciler = RECONCILERS[kind_name]
    key = (kind_name, namespace, name)
    with _locks[key]:  # one reconcile per object at a time (timer and events may overlap)
        obj = kube().get(kind, key[1], key[2])  # the latest, not the event's possibly stale copy
        if obj is None:
            return
        reconcile_object(kind, obj, kube(), reconciler)


def _register(kind: KindInfo) -> None:
    res = (kind.group, kind.version, kind.plural)

    def reconcile(body: kopf.Body, **_: Any) -> None:
        _reconcile(kind.kind, body)

    def forget(body: kopf.Body, **_: Any) -> None:
        OBJECT_PHASES.forget(kind.kind, body.metadata.namespace or "", body.metadata.name or "")

    handler_id = f"reconcile-{kind.singular}"
    kopf.on.create(*res, id=handler_id)(reconcile)
    kopf.on.update(*res, id=handler_id)(reconcile)
    kopf.on.resume(*res, id=handler_id)(reconcile)
    kopf.timer(
        *res,
        id=f"resync-{kind.singular}",
        interval=SETTINGS.resync_seconds,
        initial_delay=SETTINGS.resync_seconds,
    )(reconcile)
    kopf.on.delete(*res, id=f"forget-{kind.singular}", optional=True)(forget)


for _kind, _ in RECONCILERS.values():
    _register(_kind)


@kopf.on.event("v1", "pods", labels={WORKBENCH_LABEL: kopf.PRESENT})
def workbench_pod_changed(body: kopf.Body, **_: Any) -> None:
    """A notebook pod was scheduled, became ready or went away: reconcile its Workbench now
    rather than at the next resync."""
    namespace = body.metadata.namespace or ""
    owner = body.metadata.labels.get(WORKBENCH_LABEL, "")
    _reconcile_key(WORKBENCH.kind, namespace, owner)
