"""The evaluation before traffic (``spec.rollout.evaluation``): a candidate's predictor starts at
0% of the route; once it is ready, a Job (``<name>-eval-<revision>``, kubeforge_runtimes'
``evaluate``) sends the prompt set to it and to the stable predictor through their own Services
and leaves the ROUGE-L scores as its termination message. The candidate passes when its score is
at least the stable's minus the tolerance, and (when both versions come from FineTuneJobs and
``maxLossIncrease`` is set) its held-out loss is at most the stable's times 1 + that share; only
then does the first step give it traffic. A regression or a failed evaluation takes the failure
action at once, before any user request reached the candidate.

A Job, not a request from the reconcile: answering a prompt set takes a model seconds to
minutes, which would hold a reconcile worker (and every other object waiting for one), and the
prompts then come from inside the cluster's network, where the predictors' Services are, with
the Job's own resources and deadline (Argo Rollouts' Job metric and Flagger's pre-rollout
webhook make the same choice)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from kubeforge_crds import FINETUNEJOB, ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.contracts.evaluation import (
    OPENAI_PATH,
    PROMPTS_MOUNT,
    EvaluationReport,
    PromptSetError,
    parse_prompts,
)
from kubeforge_crds.modelserver import (
    Evaluation,
    EvaluationPhase,
    EvaluationResult,
    FailureAction,
    ModelServerPhase,
    ModelServerSpec,
    ModelServerStatus,
    Revision,
    RolloutProgress,
)
from kubeforge_operator.modelserver.canary import Action, Decision
from kubeforge_operator.modelserver.observe import Observed
from kubeforge_operator.modelserver.rollout import (
    EVALUATION_POLL,
    Plan,
    apply_decision,
    held_plan,
    start_steps,
)
from kubeforge_operator.modelserver.traffic import Mode, canary_ready, predictor_service
from kubeforge_operator.runtime.children import (
    child_metadata,
    container_security_context,
    pod_security_context,
    standard_labels,
    with_pull_policy,
)
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.pods import termination_result, true_condition
from kubeforge_operator.runtime.policies import placement_or_problem
from kubeforge_operator.runtime.reconcile import ReconcileContext

STAGE = "evaluation"
FINAL = (EvaluationPhase.REGRESSED, EvaluationPhase.FAILED)
TERMINATION_LOG = "/dev/termination-log"
FIELD = "spec.rollout.evaluation"


def job_name(name: str, revision: str) -> str:
    return f"{name}-eval-{revision}"  # 45 + 6 + 11 characters at most


def prompts_problem(
    ctx: ReconcileContext, evaluation: Evaluation, mode: Mode
) -> Observation | None:
    """Why the evaluation cannot start (checked before a rollout starts, so the stable version
    keeps serving and nothing is created): KServe's mode, the ConfigMap or its prompts."""

    def refused(reason: str, message: str) -> Observation:
        return Observation(ACCEPTED, ConditionStatus.FALSE, reason, message)

    if mode != Mode.STANDARD:
        return refused(
            "EvaluationNeedsStandardMode",
            f"{FIELD}: the candidate is evaluated through its own predictor Service, which "
            f"KServe makes in Standard mode; this cluster serves ModelServers in {mode} mode "
            "(operator setting kserveMode)",
        )
    ref = evaluation.prompts
    cm = ctx.kube.get_child("v1", "ConfigMap", ctx.namespace, ref.config_map)
    if cm is None:
        return refused(
            "EvaluationPromptsNotFound",
            f"{FIELD}.prompts.configMap: ConfigMap {ref.config_map!r} not found in namespace "
            f"{ctx.namespace}; create it with the prompt set under key {ref.key!r}",
        )
    data = cm.get("data") or {}
    if ref.key not in data:
        keys = ", ".join(sorted(data)) or "none"
        return refused(
            "EvaluationPromptsInvalid",
            f"{FIELD}.prompts.key: ConfigMap {ref.config_map!r} has no key {ref.key!r} "
            f"(its keys: {keys})",
        )
    try:
        parse_prompts(str(data[ref.key]))
    except PromptSetError as err:
        return refused(
            "EvaluationPromptsInvalid",
            f"{FIELD}.prompts: ConfigMap {ref.config_map!r}, key {ref.key!r}: {err}",
        )
    return None


def build_evaluation_job(
    owner: dict[str, Any],
    evaluation: Evaluation,
    revision: str,
    image: str,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The Job that evaluates ``revision`` (the canary predictor) against the stable one, where
    the platform runs CPU workloads (``placement``).

    Long on purpose: one literal manifest, read top to bottom as kubectl would show it."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    labels = standard_labels("modelserver", name, STAGE)

    def url(canary: bool) -> str:
        return f"http://{predictor_service(name, canary)}.{namespace}.svc{OPENAI_PATH}"

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
            f"--model={name}",
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
    deadline = int(parse_duration(evaluation.timeout).total_seconds())
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(owner, job_name(name, revision), labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
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


def judge(
    evaluation: Evaluation,
    report: EvaluationReport,
    candidate_loss: float | None,
    stable_loss: float | None,
) -> tuple[bool, str]:
    """Whether the candidate passes, and the numbers in words."""
    cand, stab = report.candidate.score, report.stable.score
    floor = max(0.0, stab - evaluation.tolerance)
    ok = cand >= floor
    said = (
        f"{report.metric} {cand:.4f} vs stable {stab:.4f} on {report.prompts} prompts "
        f"({'>=' if ok else '<'} {floor:.4f}, tolerance {evaluation.tolerance:g})"
    )
    limit = evaluation.max_loss_increase
    if limit is not None and candidate_loss is not None and stable_loss is not None:
        bound = stable_loss * (1 + limit)
        loss_ok = candidate_loss <= bound
        said += (
            f"; held-out loss {candidate_loss:.4f} vs stable {stable_loss:.4f} "
            f"({'<=' if loss_ok else '>'} {bound:.4f})"
        )
        ok = ok and loss_ok
    elif limit is not None:
        said += "; held-out loss not compared (both versions need a FineTuneJob's evaluation)"
    if not ok and report.worst:
        w = report.worst[0]
        said += f"; e.g. {str(w['prompt'])[:80]!r}: {w['candidate']} vs {w['stable']}"
    return ok, said


def result(
    revision: str,
    name: str,
    phase: EvaluationPhase,
    started: datetime | None,
    now: datetime | None = None,
    report: EvaluationReport | None = None,
    losses: tuple[float | None, float | None] = (None, None),
    message: str = "",
) -> EvaluationResult:
    return EvaluationResult(
        revision=revision,
        phase=phase,
        job=job_name(name, revision),
        candidate=report.candidate.score if report else None,
        stable=report.stable.score if report else None,
        candidate_loss=losses[0],
        stable_loss=losses[1],
        prompts=report.prompts if report else None,
        message=message[:1024],
        start_time=started,
        completion_time=now,
    )


def evaluation_of(spec: ModelServerSpec) -> Evaluation | None:
    return spec.rollout.evaluation


def held_out_losses(
    ctx: ReconcileContext, candidate: Revision, stable: Revision
) -> tuple[float | None, float | None]:
    """Each version's held-out loss from its FineTuneJob's evaluation (None: not from one)."""

    def loss(rev: Revision) -> float | None:
        if not rev.fine_tune_job:
            return None
        ftj = ctx.kube.get(FINETUNEJOB, ctx.namespace, rev.fine_tune_job) or {}
        value = ((ftj.get("status") or {}).get("evaluation") or {}).get("loss")
        return float(value) if isinstance(value, int | float) else None

    return loss(candidate), loss(stable)


def evaluation_step(
    ctx: ReconcileContext,
    spec: ModelServerSpec,
    status: ModelServerStatus,
    desired: Revision,
    rollout: RolloutProgress,
    seen: Observed,
) -> Plan:
    """One pass of a rollout whose canary waits for its evaluation at 0%: start the Job once the
    canary's predictor is ready, wait for it, then judge: the first step, or the failure action.

    Long on purpose: the evaluation's states, each a few lines, read best in one place."""
    stable = cast(Revision, status.stable)
    evaluation = spec.rollout.evaluation
    if evaluation is None:  # the spec dropped the evaluation: the steps start now
        return start_steps(spec, stable, desired, rollout, ctx.now, "evaluate", "no evaluation")
    done = status.evaluation
    if done is not None and done.revision == desired.revision and done.phase in FINAL:
        return held_plan(status, desired, rollout)  # held for a person after a failed one
    waiting = Plan(desired, 0, {}, phase=ModelServerPhase.PROGRESSING)
    waiting.next_analysis = ctx.now + EVALUATION_POLL
    if not canary_ready(seen.isvc, seen.canary_deployment, desired.revision):
        return waiting
    name = job_name(ctx.name, desired.revision)
    job = ctx.kube.get_child("batch/v1", "Job", ctx.namespace, name)
    if job is None:
        cpu = placement_or_problem(ctx, None, None)  # where CPU workloads run
        manifest = build_evaluation_job(
            ctx.obj,
            evaluation,
            desired.revision,
            ctx.settings.evaluation_image,
            cpu if isinstance(cpu, Placement) else None,
        )
        ctx.kube.apply(with_pull_policy(manifest, ctx.settings.image_pull_policy))
        running = result(desired.revision, ctx.name, EvaluationPhase.RUNNING, ctx.now)
        waiting.status = {"evaluation": running.to_wire()}
        return waiting
    started = done.start_time if done is not None and done.revision == desired.revision else None
    pods = ctx.kube.list_children("v1", "Pod", ctx.namespace, f"job-name={name}")
    phase, report, why = job_outcome(job, pods)
    if phase == EvaluationPhase.RUNNING:
        return waiting
    losses = held_out_losses(ctx, desired, stable) if report is not None else (None, None)
    passed, said = judge(evaluation, report, *losses) if report is not None else (False, why)
    if passed:
        outcome = result(
            desired.revision,
            ctx.name,
            EvaluationPhase.PASSED,
            started,
            ctx.now,
            report,
            losses,
            said,
        )
        plan = start_steps(
            spec, stable, desired, rollout, ctx.now, "evaluate", f"evaluation passed: {said}",
            measured(report, losses),
        )  # fmt: skip
        plan.status["evaluation"] = outcome.to_wire()
        return plan
    phase = EvaluationPhase.FAILED if report is None else EvaluationPhase.REGRESSED
    cause = "EvaluationFailed" if report is None else "EvaluationRegressed"
    outcome = result(desired.revision, ctx.name, phase, started, ctx.now, report, losses, said)
    failures = (
        spec.rollout.failure_threshold
    )  # no second chance: the same prompts, the same answers
    action = Action.ROLLBACK if spec.rollout.on_failure == FailureAction.ROLLBACK else Action.HOLD
    words = "evaluation failed" if report is None else "evaluation regressed"
    decision = Decision(action, 0, 0, failures, f"{words}: {said}", cause=cause)
    plan = apply_decision(spec, status, desired, rollout, decision, ctx.now, EVALUATION_POLL)
    plan.status["evaluation"] = outcome.to_wire()
    plan.decisions = [
        d.model_copy(update={"measurements": measured(report, losses)}) for d in plan.decisions
    ]
    return plan


def measured(
    report: EvaluationReport | None, losses: tuple[float | None, float | None]
) -> dict[str, float]:
    """The numbers a decision records."""
    values: dict[str, float] = {}
    if report is not None:
        values[report.metric] = report.candidate.score
        values[f"{report.metric}-stable"] = report.stable.score
    for key, value in zip(("loss", "loss-stable"), losses, strict=True):
        if value is not None:
            values[key] = value
    return values
