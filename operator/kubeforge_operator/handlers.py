"""kopf glue: every kind is reconciled by the same level-based function on every watch event and
on a slow resync. The decorators stay thin; the work is in ``reconcile_object`` and each kind's
``reconcile_<kind>``.

The handlers only put the object's key in the controller's work queue (they are coroutines:
no thread is handed a task per event); the controller's workers reconcile, each key once however
many events named it meanwhile.

Why watch events and an own resync loop instead of kopf's create/update/resume handlers and
timers: those store kopf's progress and diff-base in annotations on every object (two writes per
object), and kopf timers put a finalizer on every object, so that objects could not be deleted
while the operator is away. A level-based reconcile needs neither: it reads the latest object and
converges, whatever the event was. Nothing of ours needs cleaning up outside the cluster, so
there is no finalizer; owner references let the garbage collector remove children.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf

from kubeforge_crds import DRIFTMONITOR, FINETUNEJOB, MODELSERVER, TEAM, WORKBENCH, KindInfo
from kubeforge_crds.contracts.labels import FINETUNEJOB_LABEL, WORKBENCH_LABEL
from kubeforge_operator import driftmonitor, finetunejob, modelserver, team, workbench
from kubeforge_operator.driftmonitor import reconcile_driftmonitor
from kubeforge_operator.finetunejob import reconcile_finetunejob
from kubeforge_operator.finetunejob.backends.local import LOCAL_RUNS
from kubeforge_operator.modelserver import reconcile_modelserver
from kubeforge_operator.runtime.constants import ANNOTATION_PREFIX, DIFFBASE_ANNOTATION, FINALIZER
from kubeforge_operator.runtime.controller import Controller, Registration
from kubeforge_operator.runtime.reconcile import OWN_WRITES
from kubeforge_operator.runtime.settings import get_settings
from kubeforge_operator.team import reconcile_team
from kubeforge_operator.workbench import reconcile_workbench

log = logging.getLogger(__name__)

RECONCILERS: dict[str, Registration] = {
    r.kind.kind: r
    for r in (
        Registration(WORKBENCH, reconcile_workbench, workbench.OWNED),
        Registration(FINETUNEJOB, reconcile_finetunejob, finetunejob.OWNED),
        Registration(MODELSERVER, reconcile_modelserver, modelserver.OWNED),
        Registration(DRIFTMONITOR, reconcile_driftmonitor, driftmonitor.OWNED),
        Registration(TEAM, reconcile_team, team.OWNED),
    )
}
SETTINGS = get_settings()
CONTROLLER = Controller(RECONCILERS, SETTINGS)


class EventsOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base for an operator of event handlers alone: no essence built.

    kopf builds every watch event's "essence" (a deep copy of the whole body, managed fields and
    status too, then cleaned and diffed against the stored one) whether or not a handler reads
    the diff. Only change handlers (``on.create``/``update``/``field``) and daemons do, and
    kubeforge registers none (see above; a unit test fails if one is added). Measured on a
    notebook pod's body, that was half a millisecond of CPU per event, a dozen events per
    Workbench, on the operator's event loop."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf stores nothing on our objects (no change handlers, no timers), but should a handler
    # of that sort be added, its annotations and finalizer stay under kubeforge.io/
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = EventsOnlyDiffBase(
        prefix=ANNOTATION_PREFIX, key=DIFFBASE_ANNOTATION
    )
    settings.watching.server_timeout = SETTINGS.watch_server_timeout
    settings.watching.client_timeout = SETTINGS.watch_client_timeout
    settings.watching.connect_timeout = SETTINGS.watch_connect_timeout
    settings.posting.level = logging.WARNING  # our own Events are posted by reconcile_object
    settings.execution.max_workers = SETTINGS.max_workers
    CONTROLLER.start_workers()
    threading.Thread(target=CONTROLLER.resync_forever, name="resync", daemon=True).start()


@kopf.on.cleanup()
def stop_resync(**_: Any) -> None:
    CONTROLLER.stop()


def _register(kind: KindInfo) -> None:
    async def on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        if not CONTROLLER.serves(kind, namespace, name):
            return  # a Team whose namespace this operator's patterns leave to another
        if type == "DELETED":
            CONTROLLER.deleted(kind.kind, namespace, name, body.metadata.uid or "")
            if kind.kind == FINETUNEJOB.kind:
                LOCAL_RUNS.stop(body.metadata.uid or "")  # a local run dies with its object
            return
        if OWN_WRITES.is_own(kind.kind, namespace, name, body.metadata.get("resourceVersion")):
            return  # the echo of our own status write: nothing new to converge on
        # the worker reads the object afresh rather than use the event's body: the body can
        # predate our own last status write, and a status computed from it would be written
        # again for nothing
        CONTROLLER.enqueue(kind.kind, namespace, name)
        if kind.kind == FINETUNEJOB.kind and _registered_version(body):
            await asyncio.to_thread(_nudge_model_servers, namespace, body)

    kopf.on.event(kind.group, kind.version, kind.plural, id=f"reconcile-{kind.singular}")(on_event)


def _registered_version(ftj: kopf.Body) -> bool:
    status = ftj.get("status") or {}
    return bool((status.get("model") or {}).get("name")) and status.get("phase") == "Succeeded"


def _nudge_model_servers(namespace: str, ftj: kopf.Body) -> None:
    """A FineTuneJob registered a version: the ModelServers that serve the newest version of
    that model (spec.model.modelName) roll it out now rather than at their next resync."""
    model = (ftj.get("status") or {}).get("model") or {}
    servers = CONTROLLER.kube.custom.list_namespaced_custom_object(
        MODELSERVER.group, MODELSERVER.version, namespace, MODELSERVER.plural
    )
    for ms in servers.get("items") or []:
        if ((ms.get("spec") or {}).get("model") or {}).get("modelName") == model["name"]:
            CONTROLLER.enqueue(MODELSERVER.kind, namespace, ms["metadata"]["name"])


for _registered in RECONCILERS.values():
    _register(_registered.kind)


@kopf.on.event("batch", "v1", "jobs", labels={FINETUNEJOB_LABEL: kopf.PRESENT})
async def finetune_job_changed(body: kopf.Body, **_: Any) -> None:
    """A FineTuneJob's validation or training Job progressed: reconcile the FineTuneJob now."""
    namespace = body.metadata.namespace or ""
    CONTROLLER.enqueue(FINETUNEJOB.kind, namespace, body.metadata.labels.get(FINETUNEJOB_LABEL, ""))


# a local pipeline run that ends reconciles its FineTuneJob at once
LOCAL_RUNS.on_exit = lambda namespace, name: CONTROLLER.enqueue(FINETUNEJOB.kind, namespace, name)


@kopf.on.event("v1", "pods", labels={WORKBENCH_LABEL: kopf.PRESENT})
async def workbench_pod_changed(body: kopf.Body, **_: Any) -> None:
    """A notebook pod was scheduled, became ready or went away: reconcile its Workbench now
    rather than at the next resync, reading the pod no older than this event."""
    namespace = body.metadata.namespace or ""
    owner = body.metadata.labels.get(WORKBENCH_LABEL, "")
    CONTROLLER.pod_changed(
        WORKBENCH.kind,
        namespace,
        owner,
        body.metadata.name or "",
        str(body.metadata.get("resourceVersion") or ""),
    )
