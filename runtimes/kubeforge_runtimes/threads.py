"""How many threads torch's matrix products get in the runtime's process.

torch takes one thread per core of the machine, not of the container: a predictor limited to 2
CPUs on a 64-core node would run 32 or more threads in a 2-CPU quota and be throttled most of
each period. And on a few cores the event loop (a streamed token's text, its event, the socket)
competes with the decoding thread's matrix products: on the 2-core machine of
``bench/generation.py`` the tiny GPT-2 streamed 0.70x of a plain ``generate`` loop's tokens/s
with two torch threads and 0.97x with one. So the runtime takes the CPUs it may use (its cgroup's
quota, else the cores it may run on) less one for the event loop, at least one, for decoding
steps. A prefill takes every whole one (:func:`prefill_threads`): its products are a prompt's length
times a step's, and until its first token is chosen the event loop has nothing of that request
to write (GPT-2 small's shape on the 2-core machine: a 30-token prefill 82 ms on one thread,
56 on two; a decoding step 16.7 ms either way).

Why written here: no well-kept library reads the cgroup's quota (``os.process_cpu_count`` and
psutil count only the cores). ``OMP_NUM_THREADS``, when set, wins (torch reads it itself).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def quota_cpus(cpu_max: str | None) -> float | None:
    """The CPUs a cgroup v2 ``cpu.max`` allows (None: no limit, or not readable)."""
    if not cpu_max:
        return None
    quota, _, period = cpu_max.strip().partition(" ")
    try:
        cpus = int(quota) / int(period or "100000")
    except ValueError:  # "max": no limit
        return None
    return cpus if cpus > 0 else None


def usable_cpus(cores: int, quota: float | None) -> int:
    """The CPUs a process may use: ``cores`` usable cores under a quota of ``quota`` CPUs
    (a fraction rounded up)."""
    return min(cores, math.ceil(quota)) if quota else cores


def whole_cpus(cores: int, quota: float | None) -> int:
    """The whole CPUs a process may use at once without being throttled: ``cores`` usable
    cores under a quota of ``quota`` CPUs rounded down, at least one (a prefill on every thread
    of a 1.5-CPU quota would spend its quota before the period ends, the event loop's share
    with it)."""
    return max(1, min(cores, math.floor(quota))) if quota else cores


def intra_op_threads(cores: int, quota: float | None) -> int:
    """torch's threads for decoding steps: the usable CPUs less one for the event loop, at
    least one."""
    return max(1, usable_cpus(cores, quota) - 1)


def _cores_and_quota() -> tuple[int, float | None]:
    try:
        cpu_max: str | None = CPU_MAX.read_text()
    except OSError:
        cpu_max = None
    return len(os.sched_getaffinity(0)), quota_cpus(cpu_max)


def prefill_threads() -> int | None:
    """torch's threads for a prefill: every whole CPU the process may use (None when
    ``OMP_NUM_THREADS`` is set: its number is for every pass)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return whole_cpus(*_cores_and_quota())


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
    threads = intra_op_threads(*_cores_and_quota())
    torch.set_num_threads(threads)
    _configured = threads
    log.info("torch uses %d thread(s) for matrix products (OMP_NUM_THREADS overrides)", threads)
    return threads


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
