"""The kubeforge operator: one kopf application that reconciles the four kubeforge.io kinds.

Handlers (``handlers``) are thin triggers; each kind's ``reconcile_<kind>`` lives in its own module
and builds children with pure ``build_*`` functions; ``conditions`` holds the status policies.
"""
