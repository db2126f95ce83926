"""The embedded local control plane, by concern: ``settings`` (paths, ports, users),
``binaries`` (the Go builds and their cache), ``processes`` (the components as daemons),
``files`` (PKI, kubeconfigs, nodes, RBAC) and ``components`` (up, down, status).
``hack/localcluster.py`` is its command line. Standard library only, plus the repository's own
``kubeforge_labs.kit`` (also standard library only)."""

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # for kubeforge_labs.kit, when run as hack/localcluster.py
    sys.path.append(_REPO)
