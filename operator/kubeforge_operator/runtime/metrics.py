"""The operator's Prometheus metrics: reconciles by kind and result, reconcile duration, objects
by kind and phase, GPUs held by namespace and kind (the REST API's GPU-hours come from it), and
each Team's quota and usage as Kueue accounts for it (the Team's status.quota)."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from kubernetes.utils.quantity import parse_quantity
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubeforge_crds import TEAM

RECONCILES = Counter(
    "kubeforge_reconcile_total",
    "Reconciles done, by kind and result (success, invalid, error).",
    ["kind", "result"],
)
RECONCILE_DURATION = Histogram(
    "kubeforge_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

ROLLOUT_DECISIONS = Counter(
    "kubeforge_rollout_decisions_total",
    "Canary rollout decisions (start, promote, hold, rollback, ...), by ModelServer.",
    ["namespace", "modelserver", "action"],
)
LEADER = Gauge(
    "kubeforge_operator_leader",
    "1 on the replica that holds the leader Lease and reconciles, 0 on a standby.",
)


class ObjectPhases(Collector):
    """``kubeforge_objects{kind,phase}``: how many objects are in each phase, from the phase the
    last reconcile of each object saw; GPUs held; a Team's quota (``kubeforge_team_*``). Collected
    on scrape, so deleted objects drop out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str, str], str] = {}
        self._gpus: dict[tuple[str, str, str], tuple[int, str]] = {}
        self._quotas: dict[tuple[str, str, str], dict[str, Any]] = {}

    def set(
        self,
        kind: str,
        namespace: str,
        name: str,
        phase: str,
        gpus: int = 0,
        product: str = "",
        quota: dict[str, Any] | None = None,
    ) -> None:
        """``quota``: a Team's status.quota (none: it has no queue, or Kueue has not made it
        active)."""
        with self._lock:
            self._phases[(kind, namespace, name)] = phase
            if gpus:
                self._gpus[(kind, namespace, name)] = (gpus, product)
            else:
                self._gpus.pop((kind, namespace, name), None)
            if quota:
                self._quotas[(kind, namespace, name)] = quota
            else:
                self._quotas.pop((kind, namespace, name), None)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((kind, namespace, name), None)
            self._gpus.pop((kind, namespace, name), None)
            self._quotas.pop((kind, namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            tally = Tally((kind, phase) for (kind, _, _), phase in self._phases.items())
            held: Tally[tuple[str, str]] = Tally()
            for (kind, namespace, _), (gpus, _product) in self._gpus.items():
                held[(namespace, kind)] += gpus
            objects = sorted(self._gpus.items())
            quotas = {name: q for (kind, _, name), q in self._quotas.items() if kind == TEAM.kind}
        gpus_family = GaugeMetricFamily(
            "kubeforge_gpus",
            "GPUs held now (status.gpus), by namespace and kind.",
            labels=["namespace", "kind"],
        )
        for (namespace, kind), count in sorted(held.items()):
            gpus_family.add_metric([namespace, kind], count)
        yield gpus_family
        # one series per object holding GPUs: the model map's GPU-hours per model and their
        # price by product (objects without GPUs have none, so this stays small)
        objects_family = GaugeMetricFamily(
            "kubeforge_object_gpus",
            "GPUs an object holds now, with the product its pods select ('' when any).",
            labels=["namespace", "kind", "name", "product"],
        )
        for (kind, namespace, name), (gpus, product) in objects:
            objects_family.add_metric([namespace, kind, name, product], gpus)
        yield objects_family
        family = GaugeMetricFamily(
            "kubeforge_objects", "Objects by kind and phase.", labels=["kind", "phase"]
        )
        for (kind, phase), count in sorted(tally.items()):
            family.add_metric([kind, phase], count)
        yield family
        yield from team_quota_families(quotas)


# a Team's quota per flavor and resource: status.quota's field and the metric's help
_QUOTA_FIELDS = (
    ("nominal", "The Team's nominal quota (its ClusterQueue's), by flavor and resource."),
    ("used", "Used by the Team's admitted workloads, borrowed included (Kueue's accounting)."),
    ("borrowed", "Of what the Team uses, what is borrowed from its cohort."),
)


def team_quota_families(quotas: dict[str, dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    """``kubeforge_team_quota_{nominal,used,borrowed}{team,flavor,resource}`` (quantities as
    numbers: ``500m`` is 0.5, ``1Gi`` 1073741824) and ``kubeforge_team_workloads{team,state}``
    from the Teams' status.quota, the numbers of Kueue's ClusterQueue status. Pure."""
    for field, help_text in _QUOTA_FIELDS:
        family = GaugeMetricFamily(
            f"kubeforge_team_quota_{field}", help_text, labels=["team", "flavor", "resource"]
        )
        for team, quota in sorted(quotas.items()):
            for flavor in quota.get("flavors") or []:
                for res in flavor.get("resources") or []:
                    value = float(parse_quantity(str(res.get(field) or "0")))
                    family.add_metric([team, flavor["name"], res["name"]], value)
        yield family
    workloads = GaugeMetricFamily(
        "kubeforge_team_workloads",
        "The Team's workloads admitted (holding quota) and pending (waiting for it).",
        labels=["team", "state"],
    )
    for team, quota in sorted(quotas.items()):
        for state in ("admitted", "pending"):
            workloads.add_metric([team, state], int(quota.get(f"{state}Workloads") or 0))
    yield workloads


OBJECT_PHASES = ObjectPhases()
REGISTRY.register(OBJECT_PHASES)
