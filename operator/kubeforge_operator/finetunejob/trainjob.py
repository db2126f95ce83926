"""Several nodes: a Kubeflow Trainer v2 ``TrainJob`` on the ClusterTrainingRuntime the chart
installs (``trainer.trainingRuntime``), and reading its state back.

Trainer's controller makes it a JobSet of one indexed Job per node (JobSet's controller, a
headless Service for the nodes' names); its torch plugin gives the container ``node`` the
variables torchrun reads (PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR,
PET_MASTER_PORT). Every rank trains; rank 0 evaluates and registers. Kueue queues and admits the
TrainJob as one workload (every node or none), through its label.

What a TrainJob lets its creator set, and where kubeforge puts each part:
- ``spec.trainer``: the image, command (torchrun), environment, number of nodes, processes per
  node and resources per node;
- ``spec.runtimePatches``, an entry of kubeforge's own (entries are keyed by manager; Kueue adds
  its own with the flavor's placement): the volumes and their mounts, the pod's security context,
  labels, node selector and tolerations. Trainer refuses ``env`` there for the ``node`` container;
  it is in ``spec.trainer``.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from kubeforge_crds import ConditionStatus
from kubeforge_crds.contracts.pipeline import PipelineParams
from kubeforge_crds.finetunejob import FineTuneJobPhase, FineTuneJobSpec
from kubeforge_operator.finetunejob.builders import (
    FAILED,
    PRIORITY_LABEL,
    SUCCEEDED,
    RunState,
    failed_run,
    training_parts,
)
from kubeforge_operator.runtime.children import child_metadata, pod_security_context
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation
from kubeforge_operator.runtime.kube import api_refusal
from kubeforge_operator.runtime.placement import QUEUE_LABEL, Placement
from kubeforge_operator.runtime.pods import (
    first_problem,
    termination_result,
    true_condition,
    unscheduled,
)
from kubeforge_operator.runtime.reconcile import Outcome

TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"
MANAGER = "kubeforge.io/operator"  # this operator's entry of spec.runtimePatches
NODE = "node"  # the replicated Job and container Trainer's torch plugin configures
# torchrun as a module: the image's Python has torch, its PATH need not have the script
TORCHRUN = ["python", "-m", "torch.distributed.run"]
# a node's rank: the pods of all nodes are one indexed Job (JobSet's job-index is 0 for all)
RANK_LABEL = "batch.kubernetes.io/job-completion-index"
# the keys of an Open Data Hub data connection: a TrainJob takes no envFrom, so each is a
# variable from the Secret (optional: a connection need not have them all)
DATA_CONNECTION_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_S3_ENDPOINT",
    "AWS_DEFAULT_REGION",
    "AWS_S3_BUCKET",
)


def why_not_created(err: Exception) -> tuple[str, str]:
    """Reason and message of a TrainJob the cluster did not take: its API not served (no
    Kubeflow Trainer), or refused (Trainer's webhook: the ClusterTrainingRuntime missing, ...);
    any other error is raised again."""
    if isinstance(err, client.ApiException):
        if err.status not in (400, 403, 404, 422):
            raise err
        return "RefusedByTrainer", api_refusal(err)
    return "TrainerNotInstalled", (
        f"the TrainJob API ({TRAINJOB_API}) is not served by this cluster: a run on "
        "spec.resources.nodes > 1 needs Kubeflow Trainer v2 and JobSet (or run on one node)"
    )


def trainer_problem(err: Exception, validated: Observation) -> Outcome:
    """A TrainJob the cluster did not take (``why_not_created``): the run waits, saying why,
    and starts once the platform has what it needs (every pass tries again)."""
    reason, message = why_not_created(err)
    return Outcome(
        phase=FineTuneJobPhase.PENDING,
        dependents=[
            Observation(ACCEPTED, ConditionStatus.FALSE, reason, message),
            Observation(SUCCEEDED, ConditionStatus.UNKNOWN, reason, message),
        ],
        fields={"gpus": 0},
        info=[validated, Observation(FAILED, ConditionStatus.FALSE, reason, "")],
    )


def pod_selector(train_name: str) -> str:
    """The pods of a TrainJob: its JobSet has its name."""
    return f"jobset.sigs.k8s.io/jobset-name={train_name}"


def _environment(container: dict[str, Any]) -> list[dict[str, Any]]:
    """The container's variables, each name once (the last wins, as in a pod's env; Trainer
    refuses a repeated name), and a data connection's keys as variables from its Secret where
    the spec sets no variable of that name (envFrom yields to env in a pod too)."""
    env = {e["name"]: e for e in container["env"]}
    for source in container.get("envFrom") or []:
        secret = source["secretRef"]["name"]
        for key in DATA_CONNECTION_KEYS:
            ref = {"name": secret, "key": key, "optional": True}
            env.setdefault(key, {"name": key, "valueFrom": {"secretKeyRef": ref}})
    return list(env.values())


def build_trainjob(
    owner: dict[str, Any],
    spec: FineTuneJobSpec,
    params: PipelineParams,
    placement: Placement,
    image: str,
    runtime: str,
) -> dict[str, Any]:
    """The TrainJob of a run on ``spec.resources.nodes`` nodes, each with ``placement``'s GPUs
    (one torch process per GPU, or one on a CPU node)."""
    job, job_labels, ctr, volumes = training_parts(
        owner, spec, params, placement, image, launcher=TORCHRUN, kind="trainjob",
        container=NODE,
    )  # fmt: skip
    pod = placement.pod_fields()
    # the queue and priority are the TrainJob's (Kueue queues it as one workload); on its JobSet,
    # Jobs or pods they would make Kueue's other integrations queue those too
    part_labels = {k: v for k, v in job_labels.items() if k not in (QUEUE_LABEL, PRIORITY_LABEL)}
    pod_patch: dict[str, Any] = {
        "volumes": volumes,
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": NODE,
                "volumeMounts": ctr["volumeMounts"],
                "securityContext": ctr["securityContext"],
            }
        ],
    }
    pod_patch |= {k: v for k, v in pod.items() if k in ("nodeSelector", "tolerations", "affinity")}
    return {
        "apiVersion": TRAINJOB_API,
        "kind": "TrainJob",
        "metadata": child_metadata(owner, job, job_labels),
        "spec": {
            "runtimeRef": {
                "name": runtime,
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
            },
            "trainer": {
                "image": image,
                "command": ctr["command"],
                "env": _environment(ctr),
                "numNodes": spec.resources.nodes,
                "numProcPerNode": max(placement.gpus, 1),
                "resourcesPerNode": ctr["resources"],
            },
            "runtimePatches": [_runtime_patch(part_labels, pod_patch)],
        },
    }


def _runtime_patch(labels: dict[str, str], pod_spec: dict[str, Any]) -> dict[str, Any]:
    """kubeforge's entry of spec.runtimePatches: the JobSet's labels, and the pod template of
    the replicated Job ``node``."""
    pod = {"metadata": {"labels": labels}, "spec": pod_spec}
    # on the Jobs too: the operator's watch of Jobs with the FineTuneJob's label reconciles it
    # as soon as a node's Job changes
    job = {"metadata": {"labels": labels}, "spec": {"template": pod}}
    node = {"name": NODE, "template": job}
    template = {"metadata": {"labels": labels}, "spec": {"replicatedJobs": [node]}}
    return {"manager": MANAGER, "trainingRuntimeSpec": {"template": template}}


def observe_trainjob(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> RunState | None:
    """Where a TrainJob is, in FineTuneJob terms (its conditions are its JobSet's: Complete,
    Failed with JobSet's reason, Suspended while Kueue holds it)."""
    if job is None:
        return None
    started = [
        p["status"].get("startTime") for p in pods if (p.get("status") or {}).get("startTime")
    ]
    start = min(started) if started else None
    if done := true_condition(job, "Complete"):
        end = done.get("lastTransitionTime")
        return RunState("Succeeded", "TrainJobComplete", "", start, end, _rank0_result(pods))
    failed = true_condition(job, "Failed")
    problem = first_problem(pods)
    if failed:
        first = _first_failure(pods)
        return failed_run(
            failed, "TrainJobFailed", "the TrainJob failed", first, problem, start, None
        )
    if true_condition(job, "Suspended") or (job.get("spec") or {}).get("suspend"):
        return RunState("Queued", "Suspended", "waiting for quota (the TrainJob is suspended)")
    if problem is not None:
        return RunState("Queued", problem.reason, problem.message, start)
    if (waiting := unscheduled(pods)) is not None:
        return RunState("Queued", waiting.reason, waiting.message, start)
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if running and len(running) >= _nodes(job):
        return RunState("Running", "TrainJobRunning", "", start)
    return RunState("Queued", "PodsPending", "waiting for the TrainJob's pods", start)


def _nodes(job: dict[str, Any]) -> int:
    return int(((job.get("spec") or {}).get("trainer") or {}).get("numNodes") or 1)


def _rank0_result(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The termination message of node 0 (rank 0 registers the model); the others' report only
    their training."""
    first = [p for p in pods if (p["metadata"].get("labels") or {}).get(RANK_LABEL) == "0"]
    return termination_result(first or pods)


def _first_failure(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod whose container failed first: when one node fails, the others die after it
    (torchrun's rendezvous broken, or stopped), and their messages are not the cause."""

    def failed_at(pod: dict[str, Any]) -> str | None:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("exitCode"):
                return str(term.get("finishedAt") or "")
        return None

    failed = sorted((at, i) for i, p in enumerate(pods) if (at := failed_at(p)) is not None)
    return [pods[failed[0][1]]] if failed else pods
