#!/usr/bin/env python3
"""The embedded local control plane: a real Kubernetes control plane on 127.0.0.1, without Docker.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl are built from pinned Go
modules (``hack/tools/*/go.mod``); kwok turns simulated Node objects into nodes whose pods the real
scheduler places and kwok moves through their lifecycle (Running; Succeeded for pods of Jobs). No
container runs. See docs/local-control-plane.md.

    python3 hack/localcluster.py build     # build the binaries once into the cache
    python3 hack/localcluster.py up        # start (harmless if already running)
    python3 hack/localcluster.py down      # stop and wipe (harmless if stopped)
    python3 hack/localcluster.py down --images   # and the real node's image store
    python3 hack/localcluster.py status
    eval "$(python3 hack/localcluster.py env)"   # KUBECONFIG, PATH and the users' tokens

Only the standard library is used, so this runs before any Python dependency is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# its parts are beside it (also when a test loads this file by path)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from kfcluster import kserve, kueue, llmisvc, node, trainer
from kfcluster.binaries import bin_dir, build
from kfcluster.components import (
    api_get,
    down,
    env,
    install_thirdparty_crds,
    is_up,
    kubectl,
    status,
    up,
)
from kfcluster.files import (
    API_RBAC,
    audit_log,
    ca_file,
    kubeconfig_path,
    node_manifest,
    tokens,
)
from kfcluster.images import TARGETS, kubeforge_image
from kfcluster.settings import APISERVER_PORT, REPO, STATE, ClusterError, log

# what the demo, the loop, the benchmarks and the tests use (``import localcluster as lc``)
__all__ = [
    "APISERVER_PORT",
    "API_RBAC",
    "REPO",
    "STATE",
    "ClusterError",
    "api_get",
    "audit_log",
    "bin_dir",
    "build",
    "ca_file",
    "down",
    "is_up",
    "kubeconfig_path",
    "kubectl",
    "node_manifest",
    "tokens",
    "up",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the control-plane binaries into the cache")
    b.add_argument("--force", action="store_true")
    sub.add_parser("up", help="start the control plane (no-op if running)")
    d = sub.add_parser("down", help="stop the control plane (no-op if stopped)")
    d.add_argument("--keep-data", action="store_true", help="keep etcd data and credentials")
    d.add_argument(
        "--images", action="store_true",
        help="also remove the real node's image store (imported again at the next up)",
    )  # fmt: skip
    sub.add_parser("status", help="show each component")
    sub.add_parser("env", help="print shell exports for KUBECONFIG, PATH and tokens")
    sub.add_parser("bin-dir", help="print where the binaries are")
    sub.add_parser("crds", help="(re)install the third-party CRDs")
    k = sub.add_parser("kserve", help="install (up) or remove (down) KServe's real controller")
    k.add_argument("action", choices=["up", "down"])
    m = sub.add_parser(
        "llmisvc",
        help="install (up, KServe's controller too) or remove (down) KServe's LLMInferenceService "
        "controller",
    )
    m.add_argument("action", choices=["up", "down"])
    q = sub.add_parser("kueue", help="install (up) or remove (down) Kueue's real controller")
    q.add_argument("action", choices=["up", "down"])
    t = sub.add_parser(
        "trainer", help="install (up) or remove (down) Kubeflow Trainer's and JobSet's controllers"
    )
    t.add_argument("action", choices=["up", "down"])
    i = sub.add_parser("images", help="build kubeforge's images for the real node (needs .venv)")
    i.add_argument("targets", nargs="*", default=sorted(TARGETS), help="default: all")
    i.add_argument("--python", type=Path, default=REPO / ".venv" / "bin" / "python")
    args = parser.parse_args()
    try:
        if args.cmd == "build":
            print(build(force=args.force))
        elif args.cmd == "up":
            up()
        elif args.cmd == "down":
            down(purge=not args.keep_data, images=args.images)
        elif args.cmd == "status":
            return status()
        elif args.cmd == "env":
            env()
        elif args.cmd == "bin-dir":
            print(bin_dir())
        elif args.cmd == "crds":
            install_thirdparty_crds()
        elif args.cmd == "kserve":
            kserve.up() if args.action == "up" else kserve.down()
        elif args.cmd == "llmisvc":
            llmisvc.up() if args.action == "up" else llmisvc.down()
        elif args.cmd == "kueue":
            kueue.up() if args.action == "up" else kueue.down()
        elif args.cmd == "trainer":
            trainer.up() if args.action == "up" else trainer.down()
        elif args.cmd == "images":
            built = [kubeforge_image(t, args.python) for t in args.targets]
            if node.is_running():
                node.import_images(built)
            print("\n".join(map(str, built)))
    except ClusterError as err:
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
