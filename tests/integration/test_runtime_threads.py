"""The runtime sets torch's threads from its cgroup's CPU quota unless OMP_NUM_THREADS says
otherwise (``kubeforge_runtimes.threads.configure``, run by the causal LM's load)."""

from __future__ import annotations

import os
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
