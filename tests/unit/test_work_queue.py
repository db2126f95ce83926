"""The controller's work queue (client-go's guarantees) and its retry of failed reconciles."""

from __future__ import annotations

import threading
import time
from typing import Any

from kubeforge_operator.runtime.controller import Controller, WorkQueue
from kubeforge_operator.runtime.settings import OperatorSettings

A = ("Workbench", "ns", "a")
B = ("Workbench", "ns", "b")


def test_a_burst_of_events_for_one_key_waits_once() -> None:
    q = WorkQueue()
    for _ in range(5):
        q.add(A)
    q.add(B)
    q.add(A)
    assert len(q) == 2
    assert q.get() == A
    assert q.get() == B
    assert len(q) == 0


def test_a_key_named_while_active_is_queued_again_when_done_and_never_twice_at_once() -> None:
    q = WorkQueue()
    q.add(A)
    assert q.get() == A
    q.add(A)  # a new event while A is being reconciled
    q.add(A)
    assert len(q) == 0  # not handed to a second worker meanwhile
    q.done(A)
    assert len(q) == 1
    assert q.get() == A
    q.done(A)
    assert len(q) == 0  # done without a new event: gone


def test_workers_block_until_work_and_leave_at_shutdown() -> None:
    q = WorkQueue()
    got: list[Any] = []
    worker = threading.Thread(target=lambda: got.extend([q.get(), q.get()]))
    worker.start()
    time.sleep(0.05)
    assert got == []  # waiting, not spinning through None
    q.add(B)
    time.sleep(0.05)
    q.shutdown()
    worker.join(timeout=2)
    assert not worker.is_alive()
    assert got == [B, None]
    q.add(A)  # after shutdown: nothing queued
    assert len(q) == 0


class _Failing(Controller):
    def __init__(self, fail: int) -> None:
        super().__init__({}, OperatorSettings(resync_seconds=5), kube=lambda: None)  # type: ignore[arg-type,return-value]
        self.fail, self.calls = fail, 0

    def reconcile(self, kind_name: str, namespace: str, name: str) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("the apiserver said no")


def test_a_failed_reconcile_is_tried_again_after_a_growing_delay_capped_at_the_resync() -> None:
    c = _Failing(fail=10)
    delays = []
    c.requeues.schedule = lambda key, delay: delays.append((key, delay))  # type: ignore[method-assign]
    for _ in range(6):
        c.safely(*A)
    assert delays == [(A, 1.0), (A, 2.0), (A, 4.0), (A, 5.0), (A, 5.0), (A, 5.0)]


def test_a_success_resets_the_delay() -> None:
    c = _Failing(fail=2)
    delays: list[float] = []
    c.requeues.schedule = lambda key, delay: delays.append(delay)  # type: ignore[method-assign]
    for _ in range(4):
        c.safely(*A)
    c.fail, c.calls = 1, 0
    c.safely(*A)
    assert delays == [1.0, 2.0, 1.0]


def test_queued_keys_are_reconciled_by_the_workers_once_each() -> None:
    c = _Failing(fail=0)
    seen: list[tuple[str, str, str]] = []
    done = threading.Event()

    def reconcile(kind_name: str, namespace: str, name: str) -> None:
        seen.append((kind_name, namespace, name))
        if len(seen) == 2:
            done.set()

    c.reconcile = reconcile  # type: ignore[method-assign]
    for _ in range(3):
        c.enqueue(*A)
        c.enqueue(*B)
    c.start_workers()
    assert done.wait(2)
    time.sleep(0.1)
    c.stop()
    assert sorted(seen) == [A, B]


def test_a_pass_is_pods_only_when_nothing_but_pod_events_asked_for_it_since_the_last() -> None:
    c = _Failing(fail=0)
    c.pod_changed(*A, "a-0", "10")
    c.pod_changed(*A, "a-0", "12")
    assert c._take(A) == (True, {("Pod", "a-0"): "12"})  # read no older than the newest event
    c.pod_changed(*A, "a-0", "13")
    c.enqueue(*A)  # the Workbench itself changed meanwhile: this pass reads every child back
    c.pod_changed(*A, "a-0", "14")  # deleted, say: the read will say so
    assert c._take(A) == (False, {("Pod", "a-0"): "14"})
    c.pod_changed(*A, "a-0", "15")  # during that pass: the next is pods-only again
    assert c._take(A) == (True, {("Pod", "a-0"): "15"})
    assert c._take(A) == (False, {})  # asked by nothing (a worker's stray pass): read it all
    c.pod_changed(*A, "a-0", "16")
    c.requeues._fire(A)  # a timer (requeue or retry after a failure) is never pods-only
    assert c._take(A)[0] is False
    c.stop()
