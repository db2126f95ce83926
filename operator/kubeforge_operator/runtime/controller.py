"""The controller machinery, named: the work queue and its workers, requeue timers, the resync
loop and the bookkeeping of deleted objects. ``handlers`` wires kopf's watch events to a
:class:`Controller`; the kinds never see any of this, only the :class:`ReconcileContext` that
``reconcile_object`` gives them (settings, the cluster, the Prometheus client)."""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
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


class WorkQueue:
    """Object keys waiting to be reconciled, with the guarantees of client-go's workqueue that a
    level-based controller relies on: a key waits at most once however many events name it (a
    burst of a pod's events becomes one reconcile of its Workbench); a key being reconciled is
    handed to no second worker; and a key named again meanwhile is queued once more when that
    reconcile ends, so no change goes unseen. kopf delivers the events but keeps no such queue
    (it runs a handler per event), and the kubernetes package has none: hence this class."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._order: deque[Key] = deque()
        self._waiting: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()  # named while active: queued again when done
        self._closed = False

    def add(self, key: Key) -> None:
        with self._cond:
            if self._closed or key in self._waiting:
                return
            if key in self._active:
                self._again.add(key)
                return
            self._waiting.add(key)
            self._order.append(key)
            self._cond.notify()

    def get(self) -> Key | None:
        """The next key, marked active until :meth:`done`; blocks; None once shut down."""
        with self._cond:
            while not self._order and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            key = self._order.popleft()
            self._waiting.discard(key)
            self._active.add(key)
            return key

    def done(self, key: Key) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._waiting.add(key)
                self._order.append(key)
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._order)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Controller:
    """Reconciles objects by key: events, timers and the resync put keys in one
    :class:`WorkQueue`, which ``max_workers`` threads drain; the latest object is read (never an
    event's copy), one reconcile per object runs at a time, a reconciler's requeue request
    becomes a timer, and a failure is logged, counted and tried again after a growing delay
    (1, 2, 4 ... s, at most the resync interval)."""

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
        self.queue = WorkQueue()
        self.requeues = Requeues(lambda key: self.enqueue(*key))
        self._failures: dict[Key, int] = {}
        # per key named since its last pass began, whether only its own pods' events named it:
        # such a pass trusts the children this process applied (ReconcileContext.pods_only),
        # any other reads every child back
        self._pods_only: dict[Key, bool] = {}
        # per key, the resourceVersion of the newest event of each of its pods since the key's
        # last pass began: that pass reads them from the apiserver's watch cache at least that
        # new (ReconcileContext.seen); held only while the key waits
        self._seen: dict[Key, dict[tuple[str, str], str]] = {}
        self._lock = threading.Lock()

    @property
    def kube(self) -> Kube:
        if self._kube is None:  # the client loads its config on first use, not at import
            self._kube = self._new_kube()
        return self._kube

    def reconcile(self, kind_name: str, namespace: str, name: str) -> None:
        registered = self.reconcilers[kind_name]
        kind = registered.kind
        key = (kind_name, namespace, name)
        pods_only, seen = self._take(key)
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
                pods_only=pods_only,
                seen=seen,
            )
        if report.requeue_after is not None:
            self.requeues.schedule(key, report.requeue_after)

    def enqueue(self, kind_name: str, namespace: str, name: str) -> None:
        """Reconcile the object soon, on a worker; a key already waiting is not queued twice."""
        key = (kind_name, namespace, name)
        with self._lock:
            self._pods_only[key] = False
        self.queue.add(key)

    def pod_changed(
        self, kind_name: str, namespace: str, name: str, pod_name: str, resource_version: str
    ) -> None:
        """The watch delivered an event of a pod of the object: reconcile the object soon, and
        read the pod no older than that event (see ReconcileContext.seen)."""
        key = (kind_name, namespace, name)
        with self._lock:
            self._seen.setdefault(key, {})["Pod", pod_name] = resource_version
            self._pods_only.setdefault(key, True)
        self.queue.add(key)

    def _take(self, key: Key) -> tuple[bool, dict[tuple[str, str], str]]:
        """For the pass starting now: whether its pods' events alone asked for it, and the
        newest resourceVersion of each pod they named; what asks from now on is for the next
        pass."""
        with self._lock:
            return self._pods_only.pop(key, False), self._seen.pop(key, {})

    def start_workers(self) -> None:
        for i in range(self.settings.max_workers):
            threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True).start()

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.safely(*key)
            finally:
                self.queue.done(key)

    def safely(self, kind_name: str, namespace: str, name: str) -> None:
        key = (kind_name, namespace, name)
        try:
            self.reconcile(kind_name, namespace, name)
        except Exception:
            # counted in kubeforge_reconcile_total; tried again after a growing delay
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = min(2.0 ** (failures - 1), float(self.settings.resync_seconds))
            log.exception(
                "Reconcile failed",
                extra={"object": f"{namespace}/{name}", "kind": kind_name, "retryIn": delay},
            )
            self.requeues.schedule(key, delay)
        else:
            self._failures.pop(key, None)

    def deleted(self, kind_name: str, namespace: str, name: str, uid: str) -> None:
        """Forget what was kept about a deleted object and its children."""
        OBJECT_PHASES.forget(kind_name, namespace, name)
        OWN_WRITES.forget(kind_name, namespace, name)
        self._failures.pop((kind_name, namespace, name), None)
        with self._lock:
            self._pods_only.pop((kind_name, namespace, name), None)
            self._seen.pop((kind_name, namespace, name), None)
        self.kube.forget_owner(uid)

    def resync_forever(self) -> None:
        """Every resync interval, queue every object of every kind (one LIST per kind); keys
        already waiting are not queued twice."""
        while not self.stopped.wait(self.settings.resync_seconds):
            for registered in self.reconcilers.values():
                for namespace, name in self._selected(registered.kind):
                    self.enqueue(registered.kind.kind, namespace, name)

    def _selected(self, kind: KindInfo) -> list[tuple[str, str]]:
        try:
            items = self.kube.custom.list_cluster_custom_object(
                kind.group, kind.version, kind.plural
            )["items"]
        except Exception:
            log.exception("Resync list failed", extra={"kind": kind.kind})
            return []
        keys = [(i["metadata"].get("namespace", ""), i["metadata"]["name"]) for i in items]
        return [(ns, name) for ns, name in keys if self.serves(kind, ns, name)]

    def serves(self, kind: KindInfo, namespace: str, name: str) -> bool:
        """Whether this operator's namespace patterns cover the object: its namespace, or for a
        cluster-scoped Team the namespace it is the team of (its name)."""
        return namespace_selected(namespace if kind.namespaced else name, self.settings.namespaces)

    def stop(self) -> None:
        self.stopped.set()
        self.requeues.cancel_all()
        self.queue.shutdown()
