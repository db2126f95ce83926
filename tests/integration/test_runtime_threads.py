"""The runtime sets torch's threads from its cgroup's CPU quota unless OMP_NUM_THREADS says
otherwise (``kubeforge_runtimes.threads.configure``, run by the causal LM's load)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeforge_runtimes import threads

pytestmark = pytest.mark.no_cluster  # this process's torch only

torch = pytest.importorskip("torch")


@pytest.fixture
def torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_quota_and_the_cores_bound_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("300000 100000\n")
    monkeypatch.setattr(threads, "CPU_MAX", cpu_max)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = min(len(os.sched_getaffinity(0)), 3)
    assert threads.configure() == max(1, cpus - 1)
    assert torch.get_num_threads() == max(1, cpus - 1)
    assert threads.prefill_threads() == cpus


def test_omp_num_threads_wins(monkeypatch: pytest.MonkeyPatch, torch_threads: None) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.configure() is None
    assert torch.get_num_threads() == 1  # left as torch set it from the variable
    assert threads.prefill_threads() is None  # and a prefill keeps them too


def test_a_worker_thread_started_during_a_prefill_keeps_the_configured_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    """A thread takes torch's process-wide count at its first product, which a prefill on every
    CPU changes for its duration: a model call in a worker thread started then pins its own."""
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")  # one CPU: one thread, whatever the machine's cores
    monkeypatch.setattr(threads, "CPU_MAX", cpu_max)
    monkeypatch.setattr(threads, "_configured", None)  # restored after the test
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.configure() == 1
    prefilling, done = threading.Event(), threading.Event()

    def prefill() -> None:  # as batching.torch_threads does around a prefill
        torch.set_num_threads(3)
        prefilling.set()
        done.wait(10)
        torch.set_num_threads(1)

    def worker(pinned: bool, out: list[int]) -> None:
        if pinned:
            threads.pin()
        out.append(torch.get_num_threads())

    decoding = threading.Thread(target=prefill)
    decoding.start()
    try:
        assert prefilling.wait(10)
        counts: dict[bool, list[int]] = {False: [], True: []}
        for pinned in (False, True):
            started = threading.Thread(target=worker, args=(pinned, counts[pinned]))
            started.start()
            started.join(10)
    finally:
        done.set()
        decoding.join(10)
    assert counts == {False: [3], True: [1]}  # unpinned, it would keep the prefill's for good


def test_the_served_model_s_calls_in_worker_threads_pin_their_count(
    tiny_base_model: Path, monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    """The v1/v2 generate and the explanations (run through ``asyncio.to_thread``) pin their
    thread's count before the model runs."""
    from kubeforge_runtimes.models import CausalLM, FoundModel

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the load leaves this process's count alone
    served = CausalLM("lm", FoundModel("transformers", tiny_base_model), 2)
    assert served.load()
    pinned: list[str] = []  # the functions that pinned, in order
    monkeypatch.setattr(threads, "pin", lambda: pinned.append(sys._getframe(1).f_code.co_name))
    (answer,) = served.generate(["ticket: printer offline. resolution:"], 2)
    assert answer
    assert pinned == ["generate"]
    assert served._explain(["ticket: disk full."])
    assert pinned[1] == "_explain"  # before its own forward passes (and its answer's generate)
