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

from kubeforge_crds.contracts.pipeline import PipelineParams
from kubeforge_crds.finetunejob import FineTuneJobSpec
from kubeforge_operator.finetunejob.builders import (
    PRIORITY_LABEL,
    RunState,
    failed_run,
    training_parts,
)
from kubeforge_operator.runtime.children import child_metadata, pod_security_context
from kubeforge_operator.runtime.placement import QUEUE_LABEL, Placement
from kubeforge_operator.runtime.pods import (
    first_problem,
    termination_result,
    true_condition,
    unscheduled,
)

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


def pod_selector(train_name: str) -> str:
    """The pods of a TrainJob: its JobSet has its name."""
    return f"jobset.sigs.k8s.io/jobset-name={train_name}"


def _environment(container: dict[str, Any]) -> list[dict[str, Any]]:
    env = list(container["env"])
    for source in container.get("envFrom") or []:
        secret = source["secretRef"]["name"]
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key,
                                                         "optional": True}}}
            for key in DATA_CONNECTION_KEYS
        ]  # fmt: skip
    return env


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
    node = {"name": NODE, "template": {"spec": {"template": pod}}}
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
        return failed_run(
            failed, "TrainJobFailed", "the TrainJob failed", pods, problem, start, None
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
