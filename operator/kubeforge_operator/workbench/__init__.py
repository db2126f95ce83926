"""The Workbench kind: a notebook server as a StatefulSet of one replica while it runs (none
while stopped), its Service and a home PersistentVolumeClaim that outlives stops, and a
NetworkPolicy that admits only the same namespace and the kubeforge API.

Children come from pure ``build_*`` functions; their state is read back into conditions by pure
policies (``observe_*``). The home PVC is owned by the Workbench, not by the StatefulSet, so
stopping (the StatefulSet deleted) keeps it and deleting the Workbench lets the garbage
collector remove it.
Idle culling (``culling``) reads the server's activity once it is ready and stops it after the
idle timeout. GPUs, node selector, tolerations and queue come from ``placement`` (an explicit
count, or a hardware profile of the platform config).
"""

from kubeforge_operator.workbench.reconcile import reconcile_workbench
from kubeforge_operator.workbench.status import OWNED

__all__ = ["OWNED", "reconcile_workbench"]
