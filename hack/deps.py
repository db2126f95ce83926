#!/usr/bin/env python3
"""The Debian packages kubeforge's demo and tests need, installed in one step (`make deps`, which
`make demo`, `make test` and CI run first): what is missing is installed when this runs as root
with apt-get; otherwise it stops at once, naming each missing package and the command that
installs it.

    python3 hack/deps.py            # install what is missing (root), or say what is
    python3 hack/deps.py --check    # only say what is missing (exit 1 if anything is)

Standard library only: it runs before the Python environment exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

# package -> why kubeforge needs it
PACKAGES = {
    "openssl": "the local control plane's keys and certificates",
    "ca-certificates": "HTTPS to the package registries",
    "git": "the sources",
    "make": "the entry points",
    "prometheus": "canary analysis and alert rules in the integration tests (promtool)",
    "chromium": "the portal's browser tests (Playwright drives Debian's Chromium)",
    # the local cluster's real node (hack/kfcluster/node.py)
    "containerd": "the real node's container runtime",
    "runc": "the real node's OCI runtime",
    "containernetworking-plugins": "the real node's pod network (bridge, host-local, portmap)",
    "iptables": "kube-proxy's Services on the real node",
    "conntrack": "kube-proxy's connection tracking clean-up",
    "socat": "the relay that lets the real node's pods reach the apiserver",
    "mmdebstrap": "the Debian base image of kubeforge's images",
    "gcc": "the pause image (pause.c, compiled static)",
    "libc6-dev": "the pause image's static C library",
}


def missing() -> list[str]:
    if shutil.which("dpkg") is None:
        return []  # not Debian: each program's own check names what it lacks
    return [
        pkg
        for pkg in PACKAGES
        if subprocess.run(["dpkg", "-s", pkg], capture_output=True).returncode != 0
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="install nothing")
    args = parser.parse_args()
    need = missing()
    if not need:
        return 0
    command = f"apt-get install -y --no-install-recommends {' '.join(need)}"
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if args.check or not can_install:
        print("kubeforge needs these Debian packages, which are not installed:", file=sys.stderr)
        for pkg in need:
            print(f"  {pkg:30} {PACKAGES[pkg]}", file=sys.stderr)
        print(f"install them with:\n  sudo apt-get update && sudo {command}", file=sys.stderr)
        return 1
    print(f"[deps] installing {' '.join(need)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*command.split(), "-qq"], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
