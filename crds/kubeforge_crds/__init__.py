"""The kubeforge.io/v1alpha1 API: every kind's spec and status, declared once.

From these models come the CRD manifests (``crds/manifests``), the CRD reference in ``docs/``, the
operator's validation and the REST API's schemas.
"""

from kubeforge_crds.base import API_VERSION, CATEGORY, GROUP, VERSION, Condition, ConditionStatus
from kubeforge_crds.driftmonitor import DRIFTMONITOR
from kubeforge_crds.finetunejob import FINETUNEJOB
from kubeforge_crds.kind import KindInfo
from kubeforge_crds.modelserver import MODELSERVER
from kubeforge_crds.team import TEAM
from kubeforge_crds.workbench import WORKBENCH

# the four kinds a team's members create in their namespace
KINDS: tuple[KindInfo, ...] = (WORKBENCH, FINETUNEJOB, MODELSERVER, DRIFTMONITOR)
KINDS_BY_NAME: dict[str, KindInfo] = {k.kind: k for k in KINDS}
# the platform admin's kinds: cluster-scoped, outside the user roles and the REST API's kinds
PLATFORM_KINDS: tuple[KindInfo, ...] = (TEAM,)
ALL_KINDS: tuple[KindInfo, ...] = (*KINDS, *PLATFORM_KINDS)

__all__ = [
    "ALL_KINDS",
    "API_VERSION",
    "CATEGORY",
    "DRIFTMONITOR",
    "FINETUNEJOB",
    "GROUP",
    "KINDS",
    "KINDS_BY_NAME",
    "MODELSERVER",
    "PLATFORM_KINDS",
    "TEAM",
    "VERSION",
    "WORKBENCH",
    "Condition",
    "ConditionStatus",
    "KindInfo",
]
