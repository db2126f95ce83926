"""The Team kind (cluster-scoped): a platform admin declares a team once, and kubeforge gives it a
namespace of the same name, its members' access there (kubeforge's edit or view role), and, with
``spec.quota``, its share of the GPU budget: a Kueue ClusterQueue of the same name in a cohort,
and the namespace's LocalQueue that its Workbenches, FineTuneJobs and ModelServers name.

Example::

    apiVersion: kubeforge.io/v1alpha1
    kind: Team
    metadata: {name: vision}
    spec:
      members:
        - {kind: User, name: alice@example.com}
        - {kind: Group, name: vision-readers, role: view}
      quota:
        cohort: gpu-pool
        flavors:
          - name: a100
            resources:
              - {name: nvidia.com/gpu, nominal: 4, borrowingLimit: 2}
              - {name: cpu, nominal: 32}
              - {name: memory, nominal: 256Gi}
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import Field, field_validator

from kubeforge_crds.base import (
    CelRule,
    KubeModel,
    LabelName,
    NonNegativeQuantity,
    ResourceStatus,
    StatusModel,
    non_negative_quantity_rule,
)
from kubeforge_crds.health import PhaseHealth
from kubeforge_crds.kind import KindInfo, NameRule

TEAM_LABEL = "kubeforge.io/team"  # on the namespace (and every child): which Team it belongs to
T = TypeVar("T")
# a resource name: a qualified name, optionally prefixed by a DNS subdomain (nvidia.com/gpu)
RESOURCE_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
)


def _unique(items: list[T], key: Callable[[T], str], what: str) -> list[T]:
    """The apiserver refuses a list-map with a key twice; the models say the same."""
    seen: set[str] = set()
    for item in items:
        if key(item) in seen:
            raise ValueError(f"{what} {key(item)!r} is listed twice")
        seen.add(key(item))
    return items


class MemberRole(StrEnum):
    EDIT = "edit"
    VIEW = "view"


class TeamMember(KubeModel):
    """A user, group or service account of the team, as an RBAC subject."""

    kind: Literal["User", "Group", "ServiceAccount"] = Field(
        default="User", description="User, Group or ServiceAccount (RBAC subject kinds)."
    )
    name: str = Field(
        min_length=1, max_length=253, description="The name your authenticator gives it."
    )
    namespace: LabelName | None = Field(
        default=None, description="The service account's namespace (ServiceAccount only)."
    )
    role: MemberRole = Field(
        default=MemberRole.EDIT,
        description="edit: create and change the four kinds in the team's namespace "
        "(kubeforge-edit); view: read them (kubeforge-view).",
    )

    cel_rules = (
        CelRule(
            rule="(self.kind == 'ServiceAccount') == has(self.__namespace__)",
            message="namespace is required for a ServiceAccount and allowed for no other kind",
            check=lambda s: (s.kind == "ServiceAccount") == (s.namespace is not None),
            field_path=".namespace",
        ),
    )


class FlavorResource(KubeModel):
    """One resource's quota in a flavor."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=RESOURCE_NAME_PATTERN,
        description="cpu, memory, nvidia.com/gpu or another resource name.",
    )
    nominal: NonNegativeQuantity = Field(
        description="What the team is guaranteed (Kueue's nominalQuota)."
    )
    borrowing_limit: NonNegativeQuantity | None = Field(
        default=None,
        description="At most this much more, borrowed from unused quota of the cohort's other "
        "teams (none: as much as is unused; 0: never borrow).",
    )
    lending_limit: NonNegativeQuantity | None = Field(
        default=None,
        description="At most this much of the nominal quota lent to the cohort while unused "
        "(none: all of it).",
    )

    cel_rules = tuple(
        non_negative_quantity_rule(f) for f in ("nominal", "borrowingLimit", "lendingLimit")
    )


class TeamFlavor(KubeModel):
    """The team's quota on one kind of node (a Kueue ResourceFlavor the platform defines)."""

    name: LabelName = Field(description="The ResourceFlavor's name.")
    resources: list[FlavorResource] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class TeamQuota(KubeModel):
    """The team's share of the GPU budget: a Kueue ClusterQueue named after the team."""

    cohort: LabelName | None = Field(
        default=None,
        description="The cohort whose teams lend each other unused quota (none: no borrowing).",
    )
    flavors: list[TeamFlavor] = Field(
        min_length=1,
        max_length=16,
        description="In order of preference; each names the same resources, in the same order "
        "(one Kueue resource group).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    cel_rules = (
        CelRule(
            rule="self.flavors.all(f, f.resources.map(r, r.name) == "
            "self.flavors[0].resources.map(r, r.name))",
            message="every flavor must name the same resources in the same order",
            check=lambda s: all(
                [r.name for r in f.resources] == [r.name for r in s.flavors[0].resources]
                for f in s.flavors
            ),
            field_path=".flavors",
        ),
        CelRule(
            rule="has(self.cohort) || self.flavors.all(f, f.resources.all(r, "
            "!has(r.borrowingLimit) && !has(r.lendingLimit)))",
            message="borrowingLimit and lendingLimit need a cohort to borrow from or lend to",
            check=lambda s: (
                s.cohort is not None
                or all(
                    r.borrowing_limit is None and r.lending_limit is None
                    for f in s.flavors
                    for r in f.resources
                )
            ),
            field_path=".cohort",
        ),
    )

    @field_validator("flavors")
    @classmethod
    def _unique_flavors(cls, flavors: list[TeamFlavor]) -> list[TeamFlavor]:
        return _unique(flavors, lambda f: f.name, "flavor")


class TeamSpec(KubeModel):
    """Who is in the team and what share of the cluster it gets."""

    description: str = Field(default="", max_length=1024, description="What the team does.")
    members: list[TeamMember] = Field(
        default_factory=list,
        max_length=256,
        description="Who gets access to the team's namespace.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["kind", "name"],
        },
    )
    quota: TeamQuota | None = Field(
        default=None, description="The team's quota (none: no LocalQueue, no ClusterQueue)."
    )
    queue_name: LabelName = Field(
        default="gpu",
        description="The LocalQueue in the team's namespace that workloads name as queueName. "
        "Not 'default': Kueue would put every unlabelled workload of the namespace in a "
        "LocalQueue of that name (CPU notebooks, validation Jobs, drift services).",
    )

    @field_validator("members")
    @classmethod
    def _unique_members(cls, members: list[TeamMember]) -> list[TeamMember]:
        return _unique(members, lambda m: f"{m.kind} {m.name}", "member")


class TeamPhase(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    FAILED = "Failed"


class ResourceUsage(StatusModel):
    """One resource of a flavor: the quota and what the team's admitted workloads use of it."""

    name: str = Field(description="The resource.")
    nominal: str = Field(description="The team's nominal quota.")
    used: str = Field(default="0", description="Used by admitted workloads, borrowed included.")
    borrowed: str = Field(default="0", description="Of that, borrowed from the cohort.")


class FlavorUsage(StatusModel):
    name: str = Field(description="The ResourceFlavor.")
    resources: list[ResourceUsage] = Field(default_factory=list)


class QuotaUsage(StatusModel):
    """The team's quota as Kueue accounts for it (its ClusterQueue's status), refreshed every
    few seconds while the Team has a quota."""

    admitted_workloads: int = Field(default=0, ge=0, description="Workloads admitted now.")
    pending_workloads: int = Field(default=0, ge=0, description="Workloads waiting for quota.")
    flavors: list[FlavorUsage] = Field(default_factory=list)


class TeamStatus(ResourceStatus):
    """What the team has now."""

    phase: TeamPhase | None = Field(default=None, description="Lifecycle phase.")
    namespace: str | None = Field(default=None, description="The team's namespace.")
    cluster_queue: str | None = Field(default=None, description="The team's Kueue ClusterQueue.")
    queue_name: str | None = Field(
        default=None, description="The LocalQueue that workloads in the namespace name."
    )
    members: int | None = Field(default=None, ge=0, description="Members with access now.")
    quota: QuotaUsage | None = Field(
        default=None, description="Quota and usage, while Kueue has the queue active."
    )


TEAM = KindInfo(
    kind="Team",
    plural="teams",
    short_names=("kft",),
    spec_model=TeamSpec,
    status_model=TeamStatus,
    description="A team: its namespace, its members' access and its share of the GPU quota "
    "(a Kueue ClusterQueue). Cluster-scoped; created by a platform admin.",
    printer_columns=(
        {"name": "Members", "type": "integer", "jsonPath": ".status.members"},
        {"name": "Admitted", "type": "integer", "jsonPath": ".status.quota.admittedWorkloads"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.quota.pendingWorkloads"},
        {"name": "Queue", "type": "string", "jsonPath": ".status.clusterQueue", "priority": 1},
    ),
    name_rule=NameRule(63, "it names the team's namespace and ClusterQueue", dns1035=True),
    health=(
        PhaseHealth("Ready", "Healthy", "Ready"),
        PhaseHealth("Pending", "Progressing", "Pending"),
        PhaseHealth("Failed", "Degraded", "Failed"),
    ),
    namespaced=False,
)
