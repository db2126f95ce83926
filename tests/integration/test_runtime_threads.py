"""The runtime sets torch's threads from its cgroup's CPU quota unless OMP_NUM_THREADS says
otherwise (``kubeforge_runtimes.threads.configure``, run by the causal LM's load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeforge_crds.contracts.serving import ENV_CPU_REQUEST
from kubeforge_pipelines import cgroups
from kubeforge_runtimes import threads

pytestmark = pytest.mark.no_cluster  # this process's torch only

torch = pytest.importorskip("torch")


@pytest.fixture
def torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_quota_and_the_cores_bound_the_threads(
    monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    monkeypatch.setattr(cgroups, "cpu_quota", lambda: 3.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(ENV_CPU_REQUEST, raising=False)
    cpus = min(len(os.sched_getaffinity(0)), 3)
    cores = threads.physical_cores(os.sched_getaffinity(0))
    assert threads.configure() == max(1, min(cores, cpus - 1))
    assert torch.get_num_threads() == max(1, min(cores, cpus - 1))
    assert threads.prefill_threads() == min(cores, cpus)


def test_the_cpus_requested_bound_the_threads_without_a_quota(
    monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    """A predictor has no CPU limit (the operator sets none): the request it is handed by the
    operator hands it bounds torch's threads instead of the node's cores."""
    monkeypatch.setattr(cgroups, "cpu_quota", lambda: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv(ENV_CPU_REQUEST, "1000")
    assert threads.configure() == 1
    assert torch.get_num_threads() == 1
    assert threads.prefill_threads() == 1
    assert threads.describe_budget() == "no CPU quota, 1 CPU(s) requested"


def in_cgroup(cpus: float, code: str) -> str:
    """What ``code`` prints, run by a Python moved (before it starts) into a real cgroup with a
    CFS quota of ``cpus`` CPUs beside this process's own (v1's cpu controller on this machine,
    or v2's), without OMP_NUM_THREADS or a CPU request."""
    found = cgroups.cpu_cgroup(cgroups.PROC_CGROUP.read_text(), cgroups.MOUNTINFO.read_text())
    assert found, "no cgroup hierarchy with the CPU controller is mounted"
    here, version = found.path, found.version
    child = here / f"kubeforge-test-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
    except OSError as err:  # not root, or a read-only cgroup file system (a container's)
        pytest.skip(f"cannot make a cgroup here (CI runs as root on the VM): {err}")
    try:
        quota = child / ("cpu.cfs_quota_us" if version == 1 else "cpu.max")
        if not quota.exists():
            pytest.skip(f"{here} does not delegate the CPU controller to its children")
        us = int(cpus * 100000)
        quota.write_text(str(us) if version == 1 else f"{us} 100000")
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", ENV_CPU_REQUEST)}
        # the shell moves itself into the cgroup, then becomes Python (preexec_fn is not safe
        # in this process, which has threads)
        enter = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'
        out = subprocess.run(
            ["sh", "-c", enter, "sh", str(child), sys.executable, "-c", code],
            env=env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return out.stdout
    finally:
        child.rmdir()  # empty again: its one process has exited


def test_a_runtime_in_a_real_cgroup_with_a_cpu_quota_plans_for_it() -> None:
    """It finds its own cgroup's quota (reading the mount point's file alone read the root
    cgroup's, which never has one) and plans a prefill on two CPUs (a fraction rounded up)."""
    out = in_cgroup(
        1.5,
        "import json; from kubeforge_pipelines import cgroups; from kubeforge_runtimes import "
        "threads; print(json.dumps([cgroups.cpu_quota(), threads.prefill_threads()]))",
    )
    cores = threads.physical_cores(os.sched_getaffinity(0))
    assert json.loads(out) == [1.5, min(2, len(os.sched_getaffinity(0)), cores)]


def test_training_in_a_real_cgroup_lowers_torch_s_threads_to_its_quota() -> None:
    """torch takes a thread per core (2 here) whatever the quota; training under a 1-CPU
    quota runs on one (``cgroups.fit_torch_threads``)."""
    out = in_cgroup(
        1.0,
        "import json, torch; from kubeforge_pipelines import cgroups; before = "
        "torch.get_num_threads(); print(json.dumps([before, cgroups.fit_torch_threads(), "
        "torch.get_num_threads()]))",
    )
    before, fitted, after = json.loads(out)
    if before < 2:
        pytest.skip("torch takes one thread on this machine already")
    assert (fitted, after) == (1, 1)


def test_omp_num_threads_wins(monkeypatch: pytest.MonkeyPatch, torch_threads: None) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.configure() is None
    assert torch.get_num_threads() == 1  # left as torch set it from the variable
    assert threads.prefill_threads() is None  # and a prefill keeps them too


def test_a_worker_thread_started_during_a_prefill_keeps_the_configured_count(
    monkeypatch: pytest.MonkeyPatch, torch_threads: None
) -> None:
    """A thread takes torch's process-wide count at its first product, which a prefill on every
    CPU changes for its duration: a model call in a worker thread started then pins its own."""
    # one CPU: one thread, whatever the machine's cores
    monkeypatch.setattr(cgroups, "cpu_quota", lambda: 1.0)
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
