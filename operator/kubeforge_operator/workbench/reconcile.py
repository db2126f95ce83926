"""The Workbench reconcile: preconditions (platform, image, placement, Secrets) -> apply the
children -> observe the pod -> idle culling -> status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from kubernetes import client

from kubeforge_crds import WORKBENCH, ConditionStatus
from kubeforge_crds.base import parse_duration, serialize_datetime
from kubeforge_crds.contracts.labels import CULLED_ANNOTATION
from kubeforge_crds.workbench import WorkbenchPhase, WorkbenchSpec, WorkbenchStatus
from kubeforge_operator.runtime.children import with_pull_policy
from kubeforge_operator.runtime.conditions import Observation
from kubeforge_operator.runtime.placement import Placement, SpecProblem
from kubeforge_operator.runtime.pods import unready_node
from kubeforge_operator.runtime.policies import (
    data_connections,
    placement_or_problem,
    platform_or_problem,
)
from kubeforge_operator.runtime.queueing import QUEUE_POLL_SECONDS, queued_observation, read_queue
from kubeforge_operator.runtime.reconcile import Outcome, ReconcileContext, accepted
from kubeforge_operator.workbench.builders import (
    build_home_pvc,
    build_network_policy,
    build_service,
    build_statefulset,
    resolve_image,
)
from kubeforge_operator.workbench.culling import (
    CULLED,
    DEFAULT_PROBE_PATH,
    ActivityReport,
    culled_observation,
    decide_cull,
    read_activity,
)
from kubeforge_operator.workbench.status import (
    DATA_CONNECTIONS,
    SCHEDULED,
    decide_phase,
    observe_scheduled,
    observe_server,
    ready_since,
    volume_wait_left,
)


@dataclass(frozen=True)
class Ready:
    """What the preconditions resolved: the image, where the pod runs, and the data
    connections' condition (None when the spec names none)."""

    image: str
    placement: Placement
    secrets: Observation | None


def reconcile_workbench(ctx: ReconcileContext, spec: WorkbenchSpec) -> Outcome:
    ready = preconditions(ctx, spec)
    if isinstance(ready, Outcome):
        return ready
    obj = ctx.obj
    culled_at = (obj["metadata"].get("annotations") or {}).get(CULLED_ANNOTATION)
    stopped = spec.stopped or culled_at is not None
    for child in (
        build_home_pvc(obj, spec),
        build_service(obj),
        build_network_policy(obj, ctx.settings.api_namespace),
    ):
        # a pass started by the notebook pod's events alone reads back only the StatefulSet
        # (scaling or deleting it is what removes the pod): these three cannot have changed
        ctx.kube.apply(child, read_back=not ctx.pods_only)
    if stopped:
        remove_notebook(ctx)
    else:
        notebook = build_statefulset(obj, spec, ready.image, ready.placement)
        refused = apply_notebook(ctx, with_pull_policy(notebook, ctx.settings.image_pull_policy))
        if refused is not None:
            return refused
    pod = ctx.child("v1", "Pod", f"{ctx.name}-0")
    fields: dict[str, Any] = {"url": f"http://{ctx.name}.{ctx.namespace}.svc/"}
    if culled_at is not None:
        culled = culled_observation(culled_at)
    elif spec.stopped:
        culled = Observation(CULLED, ConditionStatus.FALSE, "Stopped", "stopped by spec.stopped")
    elif observe_server(pod, stopped).status != ConditionStatus.TRUE:
        culled = Observation(
            CULLED, ConditionStatus.FALSE, "NotRunning", "activity is read once the server is ready"
        )
    else:
        culled, stopped = cull_if_idle(ctx, spec, ready, pod, fields)
    # the node's state from the apiserver's cache (resourceVersion 0: any version it holds):
    # milliseconds behind at most, which a message about a node's heartbeat does not notice
    node = unready_node(pod, lambda name: ctx.kube.get_child("v1", "Node", "", name, "0"))
    server = observe_server(pod, stopped, node)
    quiet = timedelta(seconds=ctx.settings.volume_quiet_seconds)
    scheduled = observe_scheduled(pod, stopped, ctx.now, quiet)
    queue = read_queue(ctx.kube, pod) if pod is not None and not stopped else None
    fields["queue"] = queue.to_wire() if queue else None
    if queue:
        scheduled = queued_observation(SCHEDULED, queue)
    holds_gpus = pod is not None and bool((pod.get("spec") or {}).get("nodeName"))
    fields["gpus"] = ready.placement.gpus if holds_gpus and not stopped else 0
    fields["gpuProduct"] = ready.placement.product
    checked = [ready.secrets] if ready.secrets is not None else []
    return Outcome(
        phase=WorkbenchPhase.QUEUED if queue else decide_phase(pod, stopped, scheduled, server),
        dependents=[accepted(), *checked, scheduled, server],
        fields=fields,
        info=[culled],
        # the position moves as others are admitted or leave, which no event of ours tells;
        # a pod waiting for its volume is a failure once it has waited too long
        requeue_after=QUEUE_POLL_SECONDS if queue else volume_wait_left(pod, ctx.now, quiet),
    )


# Kueue's StatefulSet webhook: it refuses, in place, a new queue while pods are ready and any
# change of the pod's shape (requests, node selector, tolerations, ...) while it has a queue
KUEUE_STATEFULSET_WEBHOOK = "vstatefulset.kb.io"


def remove_notebook(ctx: ReconcileContext) -> None:
    """A stopped Workbench has no StatefulSet: it is deleted, not scaled to zero (its home
    volume is a claim of its own and stays). Scaled to zero, Kueue (v0.17.0 here; upstream
    kubernetes-sigs/kueue#12232, fixed after v0.18.1) may leave the StatefulSet's Workload
    admitted with no owner left, holding the team's quota for good: it drops the StatefulSet
    from the Workload's owners while the garbage collector has already dropped the deleted pod
    (seen in CI: the next queued Workbench never admitted). A deleted StatefulSet's Workload is
    deleted by the garbage collector once its pod is gone, and Kueue then admits the next.
    Read first, so a stopped Workbench's passes write nothing."""
    if ctx.child("apps/v1", "StatefulSet", ctx.name) is not None:
        ctx.kube.delete_child("apps/v1", "StatefulSet", ctx.namespace, ctx.name)


def apply_notebook(ctx: ReconcileContext, statefulset: dict[str, Any]) -> Outcome | None:
    """Apply the notebook's StatefulSet; when Kueue's webhook refuses the change in place,
    delete it to be created anew on the next pass (the home volume is a claim of its own and
    stays), and say so."""
    try:
        ctx.kube.apply(statefulset)
        return None
    except client.ApiException as exc:
        refusal = str(exc.body or "")
        if exc.status not in (400, 403, 422) or KUEUE_STATEFULSET_WEBHOOK not in refusal:
            raise
    ctx.kube.delete_child("apps/v1", "StatefulSet", ctx.namespace, ctx.name)
    why = (
        "Kueue does not let the notebook's StatefulSet change its queue or its pod's resources "
        "in place: recreating it (the home volume is kept)"
    )
    ctx.kube.record_event(ctx.obj, "Normal", "Recreating", why)
    return Outcome(
        phase=WorkbenchPhase.PENDING,
        dependents=[accepted(), Observation(SCHEDULED, ConditionStatus.UNKNOWN, "Recreating", why)],
        fields={"queue": None, "gpus": 0},
        requeue_after=2.0,
    )


def preconditions(ctx: ReconcileContext, spec: WorkbenchSpec) -> Ready | Outcome:
    """The platform config, the image, the placement and the data connections' Secrets, in
    that order; the first that fails is the outcome, and nothing is created."""
    platform = platform_or_problem(ctx, WorkbenchPhase.PENDING)
    if isinstance(platform, Outcome):
        return platform
    image = resolve_image(spec, platform)
    if isinstance(image, SpecProblem):
        return Outcome(phase=WorkbenchPhase.FAILED, dependents=[image.observation()])
    placement = placement_or_problem(
        ctx, spec.resources.accelerator, spec.queue_name, WorkbenchPhase.PENDING, platform
    )
    if isinstance(placement, Outcome):
        return placement
    refs = [
        (f"spec.dataConnections[{i}].secretName", d.secret_name)
        for i, d in enumerate(spec.data_connections)
    ]
    secrets = data_connections(ctx, DATA_CONNECTIONS, refs)
    if isinstance(secrets, Outcome):
        return secrets
    return Ready(image, placement, secrets)


def cull_if_idle(
    ctx: ReconcileContext,
    spec: WorkbenchSpec,
    ready: Ready,
    pod: dict[str, Any] | None,
    fields: dict[str, Any],
) -> tuple[Observation, bool]:
    """Read the running server's activity and stop the Workbench after the idle timeout (the
    culled-at annotation, an Event, the StatefulSet removed). Returns the Culled condition and
    whether the Workbench is now stopped; records lastActivity in ``fields``."""
    url = ctx.settings.activity_url_template.format(
        name=ctx.name, namespace=ctx.namespace, path=spec.culling.probe_path or DEFAULT_PROBE_PATH
    )
    status = cast(WorkbenchStatus, WORKBENCH.parse_status(ctx.obj.get("status")))
    # a server that has just become ready counts as active then, so a restarted Workbench is
    # never culled on the strength of the activity it had before it was stopped
    floor = [t for t in (status.last_activity, ready_since(pod)) if t is not None]
    decision = decide_cull(
        spec.culling.enabled,
        parse_duration(spec.culling.idle_timeout),
        read_activity(url) if spec.culling.enabled else ActivityReport(),
        max(floor) if floor else None,
        ctx.now,
    )
    if decision.last_activity is not None:
        fields["lastActivity"] = serialize_datetime(decision.last_activity)
    if not decision.cull:
        return decision.observation, False
    culled_at = serialize_datetime(ctx.now)
    ctx.kube.annotate(WORKBENCH, ctx.namespace, ctx.name, CULLED_ANNOTATION, culled_at)
    ctx.kube.record_event(ctx.obj, "Normal", "Culled", decision.observation.message)
    remove_notebook(ctx)
    return culled_observation(culled_at), True
