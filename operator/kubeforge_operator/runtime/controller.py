"""The controller machinery, named: one lock per object, requeue timers, the resync loop and
the bookkeeping of deleted objects. ``handlers`` wires kopf's watch events to a
:class:`Controller`; the kinds never see any of this, only the :class:`ReconcileContext` that
``reconcile_object`` gives them (settings, the cluster, the Prometheus client)."""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kubeforge_crds import KindInfo
from kubeforge_operator.runtime.kube import Kube
from kubeforge_operator.runtime.metrics import OBJECT_PHASES
from kubeforge_operator.runtime.prometheus import Prometheus
from kubeforge_operator.runtime.reconcile import OWN_WRITES, Reconciler, reconcile_object
from kubeforge_operator.runtime.settings import OperatorSettings

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True)
class Registration:
    """A kind the controller reconciles: its API, its reconciler and the conditions the
    reconciler owns (each set on every pass, Unknown when a pass stops before it)."""

    kind: KindInfo
    reconcile: Reconciler
    owned: tuple[str, ...] = ()


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


class Requeues:
    """One pending timer per object: the earliest time something asked to reconcile it again
    (a ModelServer's next canary analysis). Watch events and the resync still come as well."""

    def __init__(self, fire: Callable[[Key], None]) -> None:
        self._fire_key = fire
        self._lock = threading.Lock()
        self._timers: dict[Key, tuple[float, threading.Timer]] = {}

    def schedule(self, key: Key, delay: float) -> None:
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

    def _fire(self, key: Key) -> None:
        with self._lock:
            self._timers.pop(key, None)
        self._fire_key(key)

    def cancel_all(self) -> None:
        with self._lock:
            for _, timer in self._timers.values():
                timer.cancel()
            self._timers.clear()


class Controller:
    """Reconciles objects by key: the latest object is read (never an event's copy), one
    reconcile per object runs at a time, a reconciler's requeue request becomes a timer, and a
    failure is logged and counted (the next event or resync tries again)."""

    def __init__(
        self,
        reconcilers: dict[str, Registration],
        settings: OperatorSettings,
        kube: Callable[[], Kube] = Kube,
    ) -> None:
        self.reconcilers = reconcilers
        self.settings = settings
        self.prometheus = Prometheus(settings.prometheus_url) if settings.prometheus_url else None
        self._new_kube = kube
        self._kube: Kube | None = None
        self._locks: defaultdict[Key, threading.Lock] = defaultdict(threading.Lock)
        self.stopped = threading.Event()
        self.requeues = Requeues(lambda key: None if self.stopped.is_set() else self.safely(*key))

    @property
    def kube(self) -> Kube:
        if self._kube is None:  # the client loads its config on first use, not at import
            self._kube = self._new_kube()
        return self._kube

    def reconcile(self, kind_name: str, namespace: str, name: str) -> None:
        registered = self.reconcilers[kind_name]
        kind = registered.kind
        key = (kind_name, namespace, name)
        with self._locks[key]:  # one reconcile per object at a time (resync and events overlap)
            obj = self.kube.get(kind, namespace, name)  # the latest, not an event's stale copy
            if obj is None:
                OBJECT_PHASES.forget(kind_name, namespace, name)
                self._locks.pop(key, None)
                return
            report = reconcile_object(
                kind,
                obj,
                self.kube,
                registered.reconcile,
                settings=self.settings,
                prometheus=self.prometheus,
                owned=registered.owned,
            )
        if report.requeue_after is not None:
            self.requeues.schedule(key, report.requeue_after)

    def safely(self, kind_name: str, namespace: str, name: str) -> None:
        try:
            self.reconcile(kind_name, namespace, name)
        except Exception:
            # the next event or resync tries again; counted in kubeforge_reconcile_total
            log.exception(
                "Reconcile failed", extra={"object": f"{namespace}/{name}", "kind": kind_name}
            )

    def deleted(self, kind_name: str, namespace: str, name: str, uid: str) -> None:
        """Forget what was kept about a deleted object and its children."""
        OBJECT_PHASES.forget(kind_name, namespace, name)
        OWN_WRITES.forget(kind_name, namespace, name)
        self.kube.forget_owner(uid)

    def resync_forever(self) -> None:
        """Every resync interval, reconcile every object of every kind (one LIST per kind)."""
        workers = self.settings.max_workers
        with ThreadPoolExecutor(workers, thread_name_prefix="resync") as pool:
            while not self.stopped.wait(self.settings.resync_seconds):
                for registered in self.reconcilers.values():
                    keys = self._selected(registered.kind)
                    kind_name = registered.kind.kind
                    list(pool.map(lambda k, kn=kind_name: self.safely(kn, *k), keys))

    def _selected(self, kind: KindInfo) -> list[tuple[str, str]]:
        try:
            items = self.kube.custom.list_cluster_custom_object(
                kind.group, kind.version, kind.plural
            )["items"]
        except Exception:
            log.exception("Resync list failed", extra={"kind": kind.kind})
            return []
        return [
            (i["metadata"]["namespace"], i["metadata"]["name"])
            for i in items
            if namespace_selected(i["metadata"]["namespace"], self.settings.namespaces)
        ]

    def stop(self) -> None:
        self.stopped.set()
        self.requeues.cancel_all()
