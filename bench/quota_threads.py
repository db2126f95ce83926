#!/usr/bin/env python3
"""Training steps under a real CPU quota: torch's own thread count (one per core of the machine)
against the count ``kubeforge_pipelines.cgroups.fit_torch_threads`` gives it (the quota's CPUs).

Each side is a Python moved, before it starts, into a cgroup of its own with a CFS quota of
``--cpus`` CPUs (this machine's cgroup v1 cpu controller, or v2's where it is delegated; needs
root), training a GPT-2 of ``--layers`` x ``--width`` on random tokens with AdamW: the median
milliseconds of a step after three warm-up steps. Sides alternate round by round; the ratio is
the median of the rounds' ratios (above 1: fitting is faster).

    sudo python bench/quota_threads.py                 # a 1-CPU quota, 3 rounds
    sudo python bench/quota_threads.py --cpus 1.5 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipelines"))

from kubeforge_pipelines import cgroups

STEPS = """
import json, statistics, sys, time, torch
from transformers import GPT2Config, GPT2LMHeadModel
from kubeforge_pipelines import cgroups
fit, layers, width, steps = sys.argv[1] == "fit", *map(int, sys.argv[2:])
torch.manual_seed(0)
if fit:
    cgroups.fit_torch_threads()
threads = torch.get_num_threads()
model = GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=width, n_head=4, vocab_size=2000,
                                   bos_token_id=0, eos_token_id=0))
opt = torch.optim.AdamW(model.parameters(), 1e-4)
x = torch.randint(0, 2000, (4, 128))
times = []
for i in range(steps + 3):
    t = time.perf_counter()
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t)
print(json.dumps({"threads": threads, "ms_per_step": statistics.median(times[3:]) * 1000}))
"""


def in_cgroup(cpus: float, args: list[str]) -> dict[str, float]:
    """``STEPS`` with ``args``, run in a new cgroup with a quota of ``cpus`` CPUs."""
    found = cgroups.cpu_cgroup(cgroups.PROC_CGROUP.read_text(), cgroups.MOUNTINFO.read_text())
    if found is None:
        raise SystemExit("no cgroup hierarchy with the CPU controller is mounted")
    here, version = found.path, found.version
    child = here / f"kubeforge-bench-{uuid.uuid4().hex[:8]}"
    child.mkdir()  # OSError: run as root, where the cgroup file system is writable
    try:
        quota = child / ("cpu.cfs_quota_us" if version == 1 else "cpu.max")
        us = int(cpus * 100000)
        quota.write_text(str(us) if version == 1 else f"{us} 100000")
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        enter = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'  # then it becomes Python
        out = subprocess.run(
            ["sh", "-c", enter, "sh", str(child), sys.executable, "-c", STEPS, *args],
            env=env, capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        child.rmdir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=float, default=1.0, help="the quota, in CPUs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    shape = [str(args.layers), str(args.width), str(args.steps)]
    rounds = []
    for _ in range(args.rounds):
        rounds.append({side: in_cgroup(args.cpus, [side, *shape]) for side in ("torch", "fit")})
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "quota_cpus": args.cpus,
        "threads": {side: rounds[0][side]["threads"] for side in ("torch", "fit")},
        "ms_per_step": {
            side: [round(r[side]["ms_per_step"], 1) for r in rounds] for side in ("torch", "fit")
        },
        "speedup": statistics.median(
            r["torch"]["ms_per_step"] / r["fit"]["ms_per_step"] for r in rounds
        ),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
