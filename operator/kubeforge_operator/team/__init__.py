"""The Team kind (cluster-scoped): a team's namespace, its members' access there, and its share
of the GPU quota as a Kueue ClusterQueue and LocalQueue. Children come from pure ``build_*``
functions (``builders``); ``reconcile`` applies them and reads Kueue's verdict on the queue.
The namespace is labelled for the team, never owned by it: deleting a Team removes the access
and the queues (owner references), and keeps the namespace and every volume in it."""

from kubeforge_operator.team.reconcile import OWNED, reconcile_team

__all__ = ["OWNED", "reconcile_team"]
