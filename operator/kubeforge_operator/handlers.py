"""kopf glue: every kind is reconciled by the same level-based function on every watch event and
on a slow resync. The decorators stay thin; the work is in ``reconcile_object`` and each kind's
``reconcile_<kind>``.

Why watch events and an own resync loop instead of kopf's create/update/resume handlers and
timers: those store kopf's progress and diff-base in annotations on every object (two writes per
object), and kopf timers put a finalizer on every object, so that objects could not be deleted
while the operator is away. A level-based reconcile needs neither: it reads the latest object and
converges, whatever the event was. Nothing of ours needs cleaning up outside the cluster, so
there is no finalizer; owner references let the garbage collector remove children.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from kubeforge_crds import DRIFTMONITOR, FINETUNEJOB, MODELSERVER, WORKBENCH, KindInfo
from kubeforge_crds.contracts.labels import FINETUNEJOB_LABEL, WORKBENCH_LABEL
from kubeforge_operator.driftmonitor import reconcile_driftmonitor
from kubeforge_operator.finetunejob import reconcile_finetunejob
from kubeforge_operator.finetunejob.backends.local import LOCAL_RUNS
from kubeforge_operator.modelserver import reconcile_modelserver
from kubeforge_operator.runtime.constants import ANNOTATION_PREFIX, DIFFBASE_ANNOTATION, FINALIZER
from kubeforge_operator.runtime.kube import Kube
from kubeforge_operator.runtime.metrics import OBJECT_PHASES
from kubeforge_operator.runtime.reconcile import OWN_WRITES, Reconciler, reconcile_object
from kubeforge_operator.runtime.settings import get_settings
from kubeforge_operator.workbench import reconcile_workbench

log = logging.getLogger(__name__)

RECONCILERS: dict[str, tuple[KindInfo, Reconciler]] = {
    WORKBENCH.kind: (WORKBENCH, reconcile_workbench),
    FINETUNEJOB.kind: (FINETUNEJOB, reconcile_finetunejob),
    MODELSERVER.kind: (MODELSERVER, reconcile_modelserver),
    DRIFTMONITOR.kind: (DRIFTMONITOR, reconcile_driftmonitor),
}

_kube: Kube | None = None
_locks: defaultdict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
_stop = threading.Event()
SETTINGS = get_settings()


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def namespace_selected(namespace: str, patterns: Iterable[str]) -> bool:
    """kopf's namespace pattern semantics: globs, ``!`` excludes, comma-separated parts, an
    implied ``*`` before a leading exclusion; no patterns means every namespace."""
    patterns = list(patterns)
    if not patterns:
        return True
    for pattern in patterns:
        parts = [p.strip() for p in pattern.split(",") if p.strip()]
        if parts and parts[0].startswith("!"):
            parts.insert(0, "*")
        selected = False
        for part in parts:
            if part.startswith("!"):
                if fnmatch.fnmatchcase(namespace, part[1:]):
                    selected = False
            elif fnmatch.fnmatchcase(namespace, part):
                selected = True
        if selected:
            return True
    return False


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf stores nothing on our objects (no change handlers, no timers), but should a handler
    # of that sort be added, its annotations and finalizer stay under kubeforge.io/
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
    settings.execution.max_workers = SETTINGS.max_workers
    threading.Thread(target=_resync_forever, name="resync", daemon=True).start()


@kopf.on.cleanup()
def stop_resync(**_: Any) -> None:
    _stop.set()
    REQUEUES.cancel_all()


def _reconcile_key(kind_name: str, namespace: str, name: str) -> None:
    kind, reconciler = RECONCILERS[kind_name]
    key = (kind_name, namespace, name)
    with _locks[key]:  # one reconcile per object at a time (resync and events may overlap)
        obj = kube().get(kind, namespace, name)  # the latest, not an event's possibly stale copy
        if obj is None:
            OBJECT_PHASES.forget(kind_name, namespace, name)
            _locks.pop(key, None)
            return
        report = reconcile_object(kind, obj, kube(), reconciler)
    if report.requeue_after is not None:
        _requeue(kind_name, namespace, name, report.requeue_after)


class _Requeues:
    """One pending timer per object: the earliest time something asked to reconcile it again
    (a ModelServer's next canary analysis). Watch events and the resync still come as well."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timers: dict[tuple[str, str, str], tuple[float, threading.Timer]] = {}

    def schedule(self, key: tuple[str, str, str], delay: float) -> None:
        due = time.monotonic() + delay
        with self._lock:
            current = self._timers.get(key)
            if current is not None and current[0] <= due:
                return
            if current is not None:
                current[1].cancel()
            timer = threading.Timer(delay, self._fire, (key,))
            timer.daemon = True
            self._timers[key] = (due, timer)
            timer.start()

    def _fire(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._timers.pop(key, None)
        if not _stop.is_set():
            _safely(*key)

    def cancel_all(self) -> None:
        with self._lock:
            for _, timer in self._timers.values():
                timer.cancel()
            self._timers.clear()


REQUEUES = _Requeues()


def _requeue(kind_name: str, namespace: str, name: str, delay: float) -> None:
    REQUEUES.schedule((kind_name, namespace, name), delay)


def _safely(kind_name: str, namespace: str, name: str) -> None:
    try:
        _reconcile_key(kind_name, namespace, name)
    except Exception:
        # the next event or resync tries again; the error is counted in kubeforge_reconcile_total
        log.exception(
            "Reconcile failed", extra={"object": f"{namespace}/{name}", "kind": kind_name}
        )


def _resync_forever() -> None:
    """Every resync interval, reconcile every object of every kind (one LIST per kind)."""
    with ThreadPoolExecutor(SETTINGS.max_workers, thread_name_prefix="resync") as pool:
        while not _stop.wait(SETTINGS.resync_seconds):
            for kind, _ in RECONCILERS.values():
                try:
                    items = kube().custom.list_cluster_custom_object(
                        kind.group, kind.version, kind.plural
                    )["items"]
                except Exception:
                    log.exception("Resync list failed", extra={"kind": kind.kind})
                    continue
                keys = [
                    (i["metadata"]["namespace"], i["metadata"]["name"])
                    for i in items
                    if namespace_selected(i["metadata"]["namespace"], SETTINGS.namespaces)
                ]
                list(pool.map(lambda k, kn=kind.kind: _safely(kn, *k), keys))


def _register(kind: KindInfo) -> None:
    def on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        if type == "DELETED":
            OBJECT_PHASES.forget(kind.kind, namespace, name)
            OWN_WRITES.forget(kind.kind, namespace, name)
            kube().forget_owner(body.metadata.uid or "")
            if kind.kind == FINETUNEJOB.kind:
                LOCAL_RUNS.stop(body.metadata.uid or "")  # a local run dies with its object
            return
        if OWN_WRITES.is_own(kind.kind, namespace, name, body.metadata.get("resourceVersion")):
            return  # the echo of our own status write: nothing new to converge on
        # read the object afresh rather than use the event's body: the body can predate our own
        # last status write, and a status computed from it would be written again for nothing
        _reconcile_key(kind.kind, namespace, name)
        if kind.kind == FINETUNEJOB.kind:
            _nudge_model_servers(namespace, body)

    kopf.on.event(kind.group, kind.version, kind.plural, id=f"reconcile-{kind.singular}")(on_event)


def _nudge_model_servers(namespace: str, ftj: kopf.Body) -> None:
    """A FineTuneJob registered a version: the ModelServers that serve the newest version of
    that model (spec.model.modelName) roll it out now rather than at their next resync."""
    model = (ftj.get("status") or {}).get("model") or {}
    if not model.get("name") or (ftj.get("status") or {}).get("phase") != "Succeeded":
        return
    servers = kube().custom.list_namespaced_custom_object(
        MODELSERVER.group, MODELSERVER.version, namespace, MODELSERVER.plural
    )
    for ms in servers.get("items") or []:
        if ((ms.get("spec") or {}).get("model") or {}).get("modelName") == model["name"]:
            _safely(MODELSERVER.kind, namespace, ms["metadata"]["name"])


for _kind, _ in RECONCILERS.values():
    _register(_kind)


@kopf.on.event("batch", "v1", "jobs", labels={FINETUNEJOB_LABEL: kopf.PRESENT})
def finetune_job_changed(body: kopf.Body, **_: Any) -> None:
    """A FineTuneJob's validation or training Job progressed: reconcile the FineTuneJob now."""
    namespace = body.metadata.namespace or ""
    _reconcile_key(FINETUNEJOB.kind, namespace, body.metadata.labels.get(FINETUNEJOB_LABEL, ""))


# a local pipeline run that ends reconciles its FineTuneJob at once
LOCAL_RUNS.on_exit = lambda namespace, name: _safely(FINETUNEJOB.kind, namespace, name)


@kopf.on.event("v1", "pods", labels={WORKBENCH_LABEL: kopf.PRESENT})
def workbench_pod_changed(body: kopf.Body, **_: Any) -> None:
    """A notebook pod was scheduled, became ready or went away: reconcile its Workbench now
    rather than at the next resync."""
    namespace = body.metadata.namespace or ""
    owner = body.metadata.labels.get(WORKBENCH_LABEL, "")
    _reconcile_key(WORKBENCH.kind, namespace, owner)
