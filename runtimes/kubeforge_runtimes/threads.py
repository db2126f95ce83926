"""How many threads torch's matrix products get in the runtime's process.

torch takes one thread per core of the machine, not of the container: a predictor limited to 2
CPUs on a 64-core node would run 32 or more threads in a 2-CPU quota and be throttled most of
each period. And on a few cores the event loop (a streamed token's text, its event, the socket)
competes with the decoding thread's matrix products: on the 2-core machine of
``bench/generation.py`` the tiny GPT-2 streamed 0.70x of a plain ``generate`` loop's tokens/s
with two torch threads and 0.97x with one. So the runtime takes the CPUs it may use (its
budget: its cgroup's quota, ``kubeforge_pipelines.cgroups``, or the CPUs its container requests
when fewer, which the operator hands its predictors in their environment, since it sets them no
CPU limit; else the CPUs it may run on) less one for the event loop, at least one, for
decoding steps. A prefill takes every one (:func:`prefill_threads`): its products are a prompt's
length times a step's, and until its first token is chosen the event loop has nothing of that
request to write (GPT-2 small's shape on the 2-core machine: a 30-token prefill 82 ms on one thread,
56 on two; a decoding step 16.7 ms either way). Neither takes more threads than the physical
cores among its CPUs (:func:`physical_cores`; with hyperthreads, a CPU is a core's thread).

``OMP_NUM_THREADS``, when set, wins (torch reads it itself).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubeforge_crds.contracts.serving import ENV_CPU_REQUEST
from kubeforge_pipelines import cgroups
from kubeforge_pipelines.cgroups import usable_cpus

log = logging.getLogger(__name__)


def requested_cpus(millicores: str | None) -> float | None:
    """The CPUs the container requests, in millicores (``ENV_CPU_REQUEST``, which the operator
    sets on its predictors; the downward API's ``requests.cpu`` with divisor ``1m`` gives the
    same); None when unset, or 0 (no request)."""
    try:
        cpus = int(millicores or "0") / 1000
    except ValueError:
        log.warning("%s=%r is not a number of millicores; ignored", ENV_CPU_REQUEST, millicores)
        return None
    return cpus if cpus > 0 else None


def cpu_budget(quota: float | None, request: float | None) -> float | None:
    """The CPUs the process should plan for: its quota, or its request when that is less (a
    pod without a CPU limit may burst past its request on an idle node, but a matrix product
    split over more threads than it gets CPUs waits for the slowest), or None: neither."""
    known = [c for c in (quota, request) if c]
    return min(known) if known else None


def intra_op_threads(cpus: int, budget: float | None, cores: int | None = None) -> int:
    """torch's threads for decoding steps: the usable CPUs (of ``cpus`` logical ones under
    ``budget``) less one for the event loop, at least one, and no more than the physical
    ``cores`` among them (with hyperthreads the event loop takes a core's second thread)."""
    usable = usable_cpus(cpus, budget)
    return max(1, min(cores or usable, usable - 1))


def prefill_count(cpus: int, budget: float | None, cores: int | None = None) -> int:
    """torch's threads for a large prefill: every usable CPU, no more than the physical
    ``cores`` among them (a thread per core, torch's own default)."""
    usable = usable_cpus(cpus, budget)
    return min(cores or usable, usable)


SYSFS_CPUS = Path("/sys/devices/system/cpu")


def physical_cores(cpus: set[int], sysfs: Path = SYSFS_CPUS) -> int:
    """The physical cores among the logical CPUs ``cpus``: on a node with hyperthreads two
    logical CPUs share a core's arithmetic units, and torch's own default is a thread per
    physical core (of the whole machine; Intel's guidance for its math libraries is the same).
    Not measured here: this VM has no hyperthreads. Read from each CPU's
    ``topology/thread_siblings_list``; a CPU without one counts as a core."""
    cores: set[frozenset[int] | int] = set()
    for cpu in cpus:
        try:
            siblings = (sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()
            cores.add(frozenset(_cpu_list(siblings)))
        except (OSError, ValueError):
            cores.add(cpu)
    return max(1, len(cores))


def _cpu_list(text: str) -> set[int]:
    """A kernel CPU list (``0-3,8,10-11``) as a set."""
    out: set[int] = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def _cpus_budget_cores() -> tuple[int, float | None, int]:
    """The logical CPUs the process may run on, its CPU budget (``cpu_budget``), and the
    physical cores among those CPUs."""
    request = requested_cpus(os.environ.get(ENV_CPU_REQUEST))
    cpus = os.sched_getaffinity(0)
    return len(cpus), cpu_budget(cgroups.cpu_quota(), request), physical_cores(cpus)


def prefill_threads() -> int | None:
    """torch's threads for a prefill (``prefill_count``; None when ``OMP_NUM_THREADS`` is
    set: its number is for every pass)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return prefill_count(*_cpus_budget_cores())


# the count configure() set (None: not set, or OMP_NUM_THREADS's)
_configured: int | None = None


def pin() -> None:
    """Give this thread the count ``configure`` set, whatever the process-wide count is now.
    A thread takes torch's process-wide count at its first parallel product, and a prefill on
    every CPU sets that count for its duration: a worker thread (``asyncio.to_thread``'s)
    started meanwhile would otherwise keep every CPU for good. Costs well under a microsecond;
    called by each model call run in such a thread."""
    if _configured is not None:
        import torch

        torch.set_num_threads(_configured)


def configure() -> int | None:
    """Set torch's threads for this process (unless ``OMP_NUM_THREADS`` is set); returns the
    number set, or None."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    global _configured
    cpus, budget, cores = _cpus_budget_cores()
    threads = intra_op_threads(cpus, budget, cores)
    torch.set_num_threads(threads)
    _configured = threads
    log.info(
        "torch uses %d thread(s) for decoding steps and %d for a large prefill (%d CPU(s) on "
        "%d core(s), %s; OMP_NUM_THREADS overrides)",
        threads, prefill_count(cpus, budget, cores), cpus, cores, describe_budget(),
    )  # fmt: skip
    return threads


def describe_budget() -> str:
    """Where the CPU budget comes from, in words: the quota and the request, each or none."""
    quota = cgroups.cpu_quota()
    request = requested_cpus(os.environ.get(ENV_CPU_REQUEST))
    said = [f"a quota of {quota:g} CPU(s)" if quota else "no CPU quota"]
    said.append(f"{request:g} CPU(s) requested" if request else "no CPU request known")
    return ", ".join(said)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's threads for this thread's passes set to ``threads`` for the block (None: left
    as they are), then set back. Setting them costs well under a microsecond."""
    import torch

    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def token_cost(model: Any) -> int:
    """About the multiply-adds one prompt token costs in a prefill: the model's parameters but
    its input embeddings (a look-up, not a product; a head tied to them is computed for the
    last position alone: ``takes_logits_to_keep``). 0 for a callable that is no module."""
    parameters = getattr(model, "parameters", None)
    if parameters is None:
        return 0
    total = sum(p.numel() for p in parameters())
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    weight = getattr(embeddings, "weight", None)
    return int(total - (weight.numel() if weight is not None else 0))
