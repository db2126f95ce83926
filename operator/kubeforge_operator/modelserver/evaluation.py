"""The evaluation before traffic (``spec.rollout.evaluation``): a candidate's predictor starts at
0% of the route; once it is ready, a Job (``<name>-eval-<digest>``, one per rollout,
kubeforge_runtimes' ``evaluate``) sends the prompt set to it and to the stable predictor
through their own Services and leaves the ROUGE-L scores as its termination message
(``evaluation_job``). The candidate passes when its score is at least the stable's minus the
tolerance, and (when both versions come from FineTuneJobs and
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
from typing import cast

from kubernetes import client

from kubeforge_crds import FINETUNEJOB, ConditionStatus
from kubeforge_crds.base import parse_duration
from kubeforge_crds.contracts.evaluation import (
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
from kubeforge_operator.modelserver.evaluation_job import (
    FIELD,
    build_evaluation_job,
    job_outcome,
)
from kubeforge_operator.modelserver.observe import Observed
from kubeforge_operator.modelserver.revisions import evaluation_job_name
from kubeforge_operator.modelserver.rollout import (
    EVALUATION_POLL,
    Plan,
    apply_decision,
    held_plan,
    start_steps,
)
from kubeforge_operator.modelserver.traffic import Mode, canary_ready
from kubeforge_operator.runtime.children import (
    with_pull_policy,
)
from kubeforge_operator.runtime.conditions import ACCEPTED, Observation
from kubeforge_operator.runtime.kube import api_refusal
from kubeforge_operator.runtime.placement import Placement
from kubeforge_operator.runtime.policies import placement_or_problem
from kubeforge_operator.runtime.reconcile import ReconcileContext

FINAL = (EvaluationPhase.REGRESSED, EvaluationPhase.FAILED)


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
        said += "; held-out loss not compared (both versions need a FineTuneJob's metrics.loss)"
    if not ok and report.worst:
        w = report.worst[0]
        said += f"; e.g. {str(w.get('prompt'))[:80]!r}: {w.get('candidate')} vs {w.get('stable')}"
    return ok, said


def result(
    revision: str,
    job: str,
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
        job=job,
        candidate=report.candidate.score if report else None,
        stable=report.stable.score if report else None,
        candidate_loss=losses[0],
        stable_loss=losses[1],
        prompts=report.prompts if report else None,
        message=message[:1024],
        start_time=started,
        completion_time=now,
    )


def held_out_losses(
    ctx: ReconcileContext, candidate: Revision, stable: Revision
) -> tuple[float | None, float | None]:
    """Each version's held-out loss, its FineTuneJob's ``status.metrics.loss`` (None: not from
    a FineTuneJob, or none reported)."""

    def loss(rev: Revision) -> float | None:
        if not rev.fine_tune_job:
            return None
        ftj = ctx.kube.get(FINETUNEJOB, ctx.namespace, rev.fine_tune_job) or {}
        value = ((ftj.get("status") or {}).get("metrics") or {}).get("loss")
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
    """One pass of a rollout whose canary waits for its evaluation at 0%: once the canary's
    predictor is ready, this rollout's Job; when it is done, the judgement (the first step, or
    the failure action). Past the timeout (counted from the rollout's start, the predictor's
    start included) it has failed; a Job the apiserver refuses has failed, saying why."""
    stable = cast(Revision, status.stable)
    evaluation = spec.rollout.evaluation
    if evaluation is None:  # the spec dropped the evaluation: the steps start now
        return start_steps(spec, stable, desired, rollout, ctx.now, "evaluate", "no evaluation")
    job_name = evaluation_job_name(ctx.name, desired.revision, stable.revision, rollout.start_time)
    done = status.evaluation if status.evaluation and status.evaluation.job == job_name else None
    if done is not None and done.phase in FINAL:
        return held_plan(status, desired, rollout)  # held for a person after a failed one
    gate = _Gate(ctx, spec, status, desired, rollout, job_name)
    deadline = rollout.start_time + parse_duration(evaluation.timeout)
    if not canary_ready(seen.isvc, seen.canary_deployment, desired.revision):
        if ctx.now >= deadline:
            return gate.failed(
                f"the candidate's predictor was not ready within {FIELD}.timeout "
                f"({evaluation.timeout})"
            )
        return gate.waiting(EvaluationPhase.PENDING, done)
    job = ctx.kube.get_child("batch/v1", "Job", ctx.namespace, job_name)
    if job is None:
        cpu = placement_or_problem(ctx, None, None)  # where CPU workloads run
        manifest = build_evaluation_job(
            ctx.obj, evaluation, job_name, desired.revision, ctx.settings.evaluation_image,
            max(30, int((deadline - ctx.now).total_seconds())),
            cpu if isinstance(cpu, Placement) else None,
        )  # fmt: skip
        try:
            ctx.kube.apply(with_pull_policy(manifest, ctx.settings.image_pull_policy))
        except client.ApiException as exc:
            if exc.status not in (400, 403, 422):
                raise
            return gate.failed(f"the evaluation Job {job_name} was refused: {api_refusal(exc)}")
        return gate.waiting(EvaluationPhase.RUNNING, None)
    pods = ctx.kube.list_children("v1", "Pod", ctx.namespace, f"job-name={job_name}")
    phase, report, why = job_outcome(job, pods)
    if phase == EvaluationPhase.RUNNING:
        return gate.waiting(EvaluationPhase.RUNNING, done)
    if report is None:
        return gate.failed(why)
    losses = held_out_losses(ctx, desired, stable)
    passed, said = judge(evaluation, report, *losses)
    if not passed:
        return gate.failed(said, report, losses)
    return gate.passed(said, report, losses)


class _Gate:
    """The plans an evaluation pass ends in, with ``status.evaluation`` as they leave it."""

    def __init__(
        self,
        ctx: ReconcileContext,
        spec: ModelServerSpec,
        status: ModelServerStatus,
        desired: Revision,
        rollout: RolloutProgress,
        job: str,
    ) -> None:
        self.ctx, self.spec, self.status = ctx, spec, status
        self.desired, self.rollout, self.job = desired, rollout, job
        known = status.evaluation if status.evaluation and status.evaluation.job == job else None
        self.started = known.start_time if known and known.start_time else ctx.now

    def waiting(self, phase: EvaluationPhase, done: EvaluationResult | None) -> Plan:
        """Come back in a moment; the phase is written when it changes."""
        plan = Plan(self.desired, 0, {}, phase=ModelServerPhase.PROGRESSING)
        plan.next_analysis = self.ctx.now + EVALUATION_POLL
        if done is None or done.phase != phase:
            now = self.ctx.now
            state = result(self.desired.revision, self.job, phase, now)
            plan.status = {"evaluation": state.to_wire()}
        return plan

    def passed(
        self, said: str, report: EvaluationReport, losses: tuple[float | None, float | None]
    ) -> Plan:
        state = result(
            self.desired.revision, self.job, EvaluationPhase.PASSED, self.started, self.ctx.now,
            report, losses, said,
        )  # fmt: skip
        stable = cast(Revision, self.status.stable)
        plan = start_steps(
            self.spec, stable, self.desired, self.rollout, self.ctx.now, "evaluate",
            f"evaluation passed: {said}", measured(report, losses),
        )  # fmt: skip
        plan.status["evaluation"] = state.to_wire()
        return plan

    def failed(
        self,
        said: str,
        report: EvaluationReport | None = None,
        losses: tuple[float | None, float | None] = (None, None),
    ) -> Plan:
        """The failure action at once: no second chance (the same prompts give the same greedy
        answers)."""
        phase = EvaluationPhase.FAILED if report is None else EvaluationPhase.REGRESSED
        cause = "EvaluationFailed" if report is None else "EvaluationRegressed"
        words = "evaluation failed" if report is None else "evaluation regressed"
        state = result(
            self.desired.revision, self.job, phase, self.started, self.ctx.now, report, losses,
            said,
        )  # fmt: skip
        policy = self.spec.rollout
        action = Action.ROLLBACK if policy.on_failure == FailureAction.ROLLBACK else Action.HOLD
        decision = Decision(action, 0, 0, policy.failure_threshold, f"{words}: {said}", cause=cause)
        plan = apply_decision(
            self.spec, self.status, self.desired, self.rollout, decision, self.ctx.now,
            EVALUATION_POLL,
        )  # fmt: skip
        plan.status["evaluation"] = state.to_wire()
        values = measured(report, losses)
        plan.decisions = [d.model_copy(update={"measurements": values}) for d in plan.decisions]
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
