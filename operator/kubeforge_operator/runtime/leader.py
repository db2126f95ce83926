"""Leader election on a coordination.k8s.io Lease, so that several operator replicas run with one
reconciling and the others waiting to take over.

Written here because neither library we use has it: kopf's "peering" pauses lower-priority
operators but lets operators of equal priority run side by side (so two replicas of one Deployment
would both reconcile), and the kubernetes Python client's ``leaderelection`` package locks on a
ConfigMap only. The algorithm is client-go's (k8s.io/client-go/tools/leaderelection):

- a candidate takes the Lease when nobody holds it, when the holder released it, or when the
  record it last saw has not changed for ``leaseDurationSeconds`` *of the candidate's own clock*
  (it never compares its clock with the holder's ``renewTime``, so clock skew cannot make two
  leaders);
- every write is an update with the last seen resourceVersion, so of two racing candidates the
  apiserver lets exactly one through;
- the leader renews every ``retry_period``; when it has not renewed for ``renew_deadline`` it has
  lost the Lease and the process exits at once (as controller-runtime does), before the Lease can
  expire for the others; the Deployment restarts it as a candidate;
- on a clean shutdown the leader releases the Lease (empty holder), so a standby takes over after
  one retry period rather than a whole lease duration.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease's spec that election reads."""

    holder: str
    lease_seconds: int
    transitions: int

    @classmethod
    def of(cls, lease: Any) -> LeaseRecord:
        spec = lease.spec
        return cls(
            holder=spec.holder_identity or "",
            lease_seconds=int(spec.lease_duration_seconds or 0),
            transitions=int(spec.lease_transitions or 0),
        )


def may_take(
    record: LeaseRecord,
    resource_version: str,
    observed: tuple[str, float] | None,
    now: float,
    identity: str,
) -> bool:
    """Whether ``identity`` may write itself into the Lease now.

    ``observed`` is (resourceVersion, local monotonic time) of the record as first seen unchanged;
    ``now`` is the same monotonic clock. The lease counts as expired only after the record stayed
    the same for its whole duration on our clock.
    """
    if record.holder in ("", identity):
        return True
    if observed is None or observed[0] != resource_version:
        return False  # new to us (or changed since): its duration starts counting now
    return now - observed[1] >= record.lease_seconds


class LeaderElector:
    """Acquire, renew and release one Lease. ``on_lost`` runs (once) if leadership is lost."""

    def __init__(
        self,
        coordination: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: int = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        on_lost: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_period < renew_deadline < lease_seconds:
            raise ValueError("need retry_period < renew_deadline < lease_seconds")
        self.api = coordination
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_lost = on_lost or (lambda: None)
        self.clock = clock
        self._observed: tuple[str, float] | None = None
        self._stop = threading.Event()
        self.leading = False

    def _now_iso(self) -> datetime:
        return datetime.now(UTC)

    def try_acquire_or_renew(self) -> bool:
        """One attempt: True if we hold the Lease afterwards."""
        now = self._now_iso()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                log.warning("Cannot read the leader Lease", extra={"error": exc.reason})
                return False
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=self.lease_seconds,
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except client.ApiException as create_exc:
                log.info("Lost the race to create the Lease", extra={"error": create_exc.reason})
                return False
            return True
        record = LeaseRecord.of(lease)
        version = str(lease.metadata.resource_version)
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, self.clock())
        if not may_take(record, version, self._observed, self.clock(), self.identity):
            return False
        spec = lease.spec
        if record.holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = record.transitions + (1 if record.holder else 0)
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = self.lease_seconds
        spec.renew_time = now
        try:  # carries metadata.resourceVersion: a concurrent writer makes this a 409
            written = self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as exc:
            log.info("Lease update refused", extra={"error": exc.reason})
            return False
        self._observed = (str(written.metadata.resource_version), self.clock())
        return True

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until we lead (True) or ``stop`` is set (False)."""
        stop = stop or self._stop
        log.info("Waiting to lead", extra={"lease": f"{self.namespace}/{self.name}"})
        while not stop.is_set():
            if self.try_acquire_or_renew():
                self.leading = True
                log.info("Leading", extra={"identity": self.identity})
                return True
            stop.wait(self.retry_period * random.uniform(1.0, 1.2))  # noqa: S311 - jitter
        return False

    def renew_forever(self) -> None:
        """Renew until stopped; call ``on_lost`` if no renewal succeeded for renew_deadline."""
        last = self.clock()
        while not self._stop.wait(self.retry_period):
            try:
                renewed = self.try_acquire_or_renew()
            except Exception:  # an unexpected error is a failed renewal, not a crash
                log.exception("Lease renewal failed")
                renewed = False
            if renewed:
                last = self.clock()
            elif self.clock() - last >= self.renew_deadline:
                self.leading = False
                log.error("Leadership lost", extra={"identity": self.identity})
                self.on_lost()
                return

    def start_renewing(self) -> threading.Thread:
        thread = threading.Thread(target=self.renew_forever, name="leader-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up (only if we still hold it), so a standby takes over at once."""
        self._stop.set()
        if not self.leading:
            return
        self.leading = False
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if (lease.spec.holder_identity or "") != self.identity:
                return
            now = self._now_iso()
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = now
            lease.spec.acquire_time = now
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
            log.info("Released the Lease", extra={"identity": self.identity})
        except client.ApiException as exc:
            log.warning("Could not release the Lease", extra={"error": exc.reason})
