"""The evaluation Job of a ModelServer's rollout (``evaluation``): its manifest, and what it
left (Running, Failed with why, or its report)."""

from __future__ import annotations

from typing import Any

from kubeforge_crds.contracts.evaluation import PROMPTS_MOUNT, EvaluationReport
from kubeforge_crds.contracts.labels import REVISION_LABEL
from kubeforge_crds.modelserver import Evaluation, EvaluationPhase
from kubeforge_operator.modelserver.traffic import predictor_service
from kubeforge_operator.runtime.children import (
    child_metadata,
    container_security_context,
    pod_security_context,
    standard_labels,
)
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.pods import termination_result, true_condition

STAGE = "evaluation"
TERMINATION_LOG = "/dev/termination-log"
FIELD = "spec.rollout.evaluation"


def build_evaluation_job(
    owner: dict[str, Any],
    evaluation: Evaluation,
    job: str,
    revision: str,
    image: str,
    deadline_seconds: int,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The Job ``job`` that evaluates ``revision`` (the canary predictor) against the stable
    one within ``deadline_seconds``, where the platform runs CPU workloads (``placement``).

    Long on purpose: one literal manifest, read top to bottom as kubectl would show it."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    labels = standard_labels("modelserver", name, STAGE) | {REVISION_LABEL: revision}

    def url(canary: bool) -> str:  # the Job finds the OpenAI API's route under it
        return f"http://{predictor_service(name, canary)}.{namespace}.svc"

    container = {
        "name": "evaluate",
        "image": image,
        "command": [
            "python",
            "-m",
            "kubeforge_runtimes",
            "evaluate",
            f"--prompts={PROMPTS_MOUNT}/{evaluation.prompts.key}",
            f"--candidate={url(True)}",
            f"--stable={url(False)}",
            f"--model={evaluation.model or name}",
            f"--max-tokens={evaluation.max_tokens}",
            f"--termination-log={TERMINATION_LOG}",
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "volumeMounts": [{"name": "prompts", "mountPath": PROMPTS_MOUNT, "readOnly": True}],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, job, labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "prompts",
                            "configMap": {
                                "name": evaluation.prompts.config_map,
                                "items": [
                                    {"key": evaluation.prompts.key, "path": evaluation.prompts.key}
                                ],
                            },
                        }
                    ],
                    "securityContext": pod_security_context(),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    **(placement.pod_fields() if placement else {}),
                },
            },
        },
    }


def job_outcome(
    job: dict[str, Any], pods: list[dict[str, Any]]
) -> tuple[EvaluationPhase, EvaluationReport | None, str]:
    """Running, or Failed with why, or Passed with the report (judged by :func:`judge`)."""
    failed = true_condition(job, "Failed", "FailureTarget")
    if failed is not None:
        error = str(termination_result(pods).get("error") or "")
        why = error or str(failed.get("message") or failed.get("reason") or "the Job failed")
        if failed.get("reason") == "DeadlineExceeded":
            why = f"the evaluation took longer than {FIELD}.timeout ({why})"
        return EvaluationPhase.FAILED, None, why[:1000]
    if true_condition(job, "Complete", "SuccessCriteriaMet") is None:
        return EvaluationPhase.RUNNING, None, ""
    result = termination_result(pods)
    try:
        return EvaluationPhase.PASSED, EvaluationReport.model_validate(result), ""
    except ValueError:
        shown = str(result)[:300]
        return EvaluationPhase.FAILED, None, f"the evaluation Job left no report ({shown})"
