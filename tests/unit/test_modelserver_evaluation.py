"""The evaluation before traffic (spec.rollout.evaluation) through the ModelServer's own reconcile,
with a recording client in place of the Kubernetes calls: the prompt set checked before anything
starts, the canary kept at 0% while a Job evaluates it, then the first step or the failure action
with the numbers in status, a decision and an Event. The Job's program itself runs against real
runtimes in tests/integration/test_evaluation_runtime.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from kubeforge_crds import MODELSERVER
from kubeforge_crds.contracts.evaluation import PromptSetError, parse_prompts
from kubeforge_crds.modelserver import Evaluation
from kubeforge_operator.modelserver.evaluation import judge
from kubeforge_operator.modelserver.evaluation_job import build_evaluation_job
from kubeforge_operator.modelserver.revisions import desired_revision, evaluation_job_name
from tests.unit.test_modelserver_reads import (
    NAME,
    NOW,
    NS,
    RecordingKube,
    _canary_deployment,
    _model_server,
    _ready_isvc,
    _reconcile,
    _rollout_status,
    _route,
)

PROMPTS = '{"prompt": "ticket: the vpn fails. resolution:", "reference": "reset the password"}\n'
EVALUATION = {"prompts": {"configMap": "eval"}, "tolerance": 0.05}
REPORT = {
    "metric": "rougeL",
    "prompts": 16,
    "candidate": {"score": 0.1, "answered": 16},
    "stable": {"score": 0.3, "answered": 16},
    "worst": [{"prompt": "ticket: the vpn fails. resolution:", "candidate": 0.0, "stable": 0.5}],
}


class Kube(RecordingKube):
    """RecordingKube with the calls the evaluation makes: apply a Job, list its pods, read a
    FineTuneJob."""

    def __init__(self, children: dict[tuple[str, str], dict[str, Any]]) -> None:
        super().__init__(children)
        self.pods: list[dict[str, Any]] = []

    def apply(self, manifest: dict[str, Any], read_back: bool = True) -> bool:
        self.applied.append(manifest)
        self.children[(manifest["kind"], manifest["metadata"]["name"])] = manifest
        return True

    def list_children(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        return self.pods


def _spec() -> dict[str, Any]:
    return {"runtime": {"modelFormat": "transformers"}, "rollout": {
        "steps": [10, 100], "interval": "30s", "evaluation": EVALUATION}}  # fmt: skip


def _status(**extra: Any) -> dict[str, Any]:
    """Serving s3://m/v1; s3://m/v2 (the spec's) in a rollout waiting for its evaluation: the
    reads test's rollout, at 0% and evaluating."""
    status = _rollout_status(NOW - timedelta(minutes=1), NOW)
    status["stable"]["trafficPercent"], status["canary"]["trafficPercent"] = 100, 0
    status["rollout"]["evaluating"] = True
    del status["rollout"]["nextAnalysisTime"]
    return status | extra


def _serving(prompts: str | None = PROMPTS) -> Kube:
    children = {
        ("InferenceService", NAME): _ready_isvc(),
        ("HTTPRoute", NAME): _route(0, minutes=1),
        ("Deployment", f"{NAME}-canary-predictor"): _canary_deployment(),
    }
    if prompts is not None:
        children[("ConfigMap", "eval")] = {"data": {"prompts.jsonl": prompts}}
    return Kube(children)


def _job_name(status: dict[str, Any] | None = None) -> str:
    """This rollout's evaluation Job."""
    from datetime import datetime

    status = status or _status()
    started = datetime.fromisoformat(status["rollout"]["startTime"].replace("Z", "+00:00"))
    rollout = status["rollout"]["revision"]
    return evaluation_job_name(NAME, rollout, status["stable"]["revision"], started)


def _finished_job(kube: Kube, condition: str, message: dict[str, Any], reason: str = "") -> str:
    revision = _status()["rollout"]["revision"]
    name = _job_name()
    failed = {"type": condition, "status": "True", "reason": reason, "message": "the Job failed"}
    kube.children[("Job", name)] = {"status": {"conditions": [failed]}}
    terminated = {"message": json.dumps(message), "finishedAt": "2026-11-30T12:00:00Z"}
    kube.pods = [{"status": {"containerStatuses": [{"state": {"terminated": terminated}}]}}]
    return revision


def _observation(outcome: Any, type_: str) -> Any:
    return next(o for o in [*outcome.dependents, *outcome.info] if o.type == type_)


def test_prompt_set_lines_are_checked_with_their_number() -> None:
    assert [c.reference for c in parse_prompts(PROMPTS + "\n" + PROMPTS)] == [
        "reset the password"
    ] * 2
    for text, said in [
        ("", "no prompts"),
        ('{"prompt": "a", "reference": "b"}\nnot json\n', "line 2: not JSON"),
        ('{"prompt": "a"}\n', "line 1: reference: Field required"),
        ('{"prompt": "", "reference": "b"}\n', "line 1: prompt: String should have at least 1"),
        ('{"prompt": "a", "reference": "b", "answer": "c"}\n', "line 1: answer: Extra inputs"),
        ('{"prompt": "a", "reference": "b"}\n' * 201, "more than 200 prompts"),
    ]:
        with pytest.raises(PromptSetError, match=said):
            parse_prompts(text)
    with pytest.raises(PromptSetError) as caught:
        parse_prompts('{"prompt": "a"}\n')
    assert str(caught.value).endswith('(each line is {"prompt": "...", "reference": "..."})')


def test_judge_compares_with_the_stable_version_within_the_tolerance() -> None:
    from kubeforge_crds.contracts.evaluation import EvaluationReport

    policy = Evaluation.model_validate({**EVALUATION, "maxLossIncrease": 0.1})
    report = EvaluationReport.model_validate(REPORT)
    ok, said = judge(policy, report, None, None)
    assert not ok
    assert "rougeL 0.1000 vs stable 0.3000 on 16 prompts (< 0.2500, tolerance 0.05)" in said
    assert "held-out loss not compared" in said
    assert "e.g. 'ticket: the vpn fails" in said
    close = report.model_copy(
        update={"candidate": report.stable.model_copy(update={"score": 0.26})}
    )
    assert judge(policy, close, 2.0, 2.0)[0]
    ok, said = judge(policy, close, 2.3, 2.0)  # 15% worse held-out loss
    assert not ok
    assert "held-out loss 2.3000 vs stable 2.0000 (> 2.2000)" in said


def test_the_job_asks_both_predictor_services_with_the_prompts_mounted() -> None:
    owner = _model_server(**_spec()) | {"apiVersion": MODELSERVER.api_version}
    policy = Evaluation.model_validate({**EVALUATION, "maxTokens": 16, "timeout": "2m"})
    job = build_evaluation_job(owner, policy, "bot-eval-0a1b2c", "r0123456789", "runtime:dev", 120)
    assert job["metadata"]["name"] == "bot-eval-0a1b2c"
    assert job["metadata"]["labels"]["kubeforge.io/revision"] == "r0123456789"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 120)
    pod = spec["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert f"--candidate=http://{NAME}-canary-predictor.{NS}.svc" in command
    assert f"--stable=http://{NAME}-predictor.{NS}.svc" in command
    assert "--prompts=/etc/kubeforge/evaluation/prompts.jsonl" in command
    assert "--max-tokens=16" in command
    assert f"--model={NAME}" in command
    assert pod["volumes"][0]["configMap"]["name"] == "eval"
    assert pod["securityContext"]["runAsNonRoot"]
    assert not pod["automountServiceAccountToken"]


@pytest.mark.parametrize(
    ("prompts", "reason", "said"),
    [
        (None, "EvaluationPromptsNotFound", "ConfigMap 'eval' not found in namespace team-a"),
        ("{}\n", "EvaluationPromptsInvalid", "line 1: prompt: Field required"),
    ],
)
def test_a_prompt_set_that_cannot_be_used_stops_the_rollout_before_it_starts(
    prompts: str | None, reason: str, said: str
) -> None:
    kube = _serving(prompts)
    spec = MODELSERVER.parse_spec(_model_server(**_spec())["spec"])
    served = {"stable": desired_revision("s3://m/v1", spec, None).model_copy(
        update={"traffic_percent": 100}).to_wire()}  # fmt: skip
    outcome = _reconcile(kube, _model_server(served, **_spec()), "Standard")
    accepted = _observation(outcome, "Accepted")
    assert (accepted.status, accepted.reason) == ("False", reason)
    assert said in accepted.message
    assert "spec.rollout.evaluation.prompts" in accepted.message
    assert not kube.applied  # nothing rolled out; the stable version keeps serving
    assert outcome.requeue_after == 30.0  # the ConfigMap is looked at again

    outcome = _reconcile(_serving(), _model_server(served, **_spec()), "Serverless")
    assert _observation(outcome, "Accepted").reason == "EvaluationNeedsStandardMode"


def test_a_new_version_waits_at_0_percent_while_the_job_evaluates_it() -> None:
    kube = _serving()
    outcome = _reconcile(kube, _model_server(_status(), **_spec()), "Standard")
    job = next(a for a in kube.applied if a["kind"] == "Job")
    route = next(a for a in kube.applied if a["kind"] == "HTTPRoute")
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == [f"{NAME}-predictor"]
    evaluation = outcome.fields["evaluation"]
    assert (evaluation["phase"], evaluation["job"]) == ("Running", job["metadata"]["name"])
    assert outcome.requeue_after == 2.0
    # the Job runs: nothing changes, nothing is applied twice
    kube.applied.clear()
    status = _status(evaluation=evaluation)
    outcome = _reconcile(kube, _model_server(status, **_spec()), "Standard")
    assert not [a for a in kube.applied if a["kind"] == "Job"]
    assert outcome.phase == "Progressing"
    assert "evaluation" not in outcome.fields


def test_a_regressed_candidate_is_rolled_back_before_any_traffic() -> None:
    kube = _serving()
    _finished_job(kube, "Complete", REPORT)
    outcome = _reconcile(kube, _model_server(_status(), **_spec()), "Standard")
    rolled = _observation(outcome, "RolledBack")
    assert (rolled.status, rolled.reason) == ("True", "EvaluationRegressed")
    assert "evaluation regressed: rougeL 0.1000 vs stable 0.3000" in rolled.message
    assert outcome.phase == "RolledBack"
    assert outcome.fields["trafficSplit"] == "100/0"
    evaluation = outcome.fields["evaluation"]
    assert (evaluation["phase"], evaluation["candidate"], evaluation["stable"]) == (
        "Regressed", 0.1, 0.3)  # fmt: skip
    decision = outcome.fields["decisions"][-1]
    assert decision["action"] == "rollback"
    assert decision["measurements"] == {"rougeL": 0.1, "rougeL-stable": 0.3}
    assert "RolloutRollback" in kube.events


def test_a_candidate_that_passes_gets_the_first_step() -> None:
    kube = _serving()
    passing = REPORT | {"candidate": {"score": 0.29, "answered": 16}}
    _finished_job(kube, "Complete", passing)
    outcome = _reconcile(kube, _model_server(_status(), **_spec()), "Standard")
    assert outcome.fields["trafficSplit"] == "90/10"
    assert outcome.fields["rollout"]["evaluating"] is False
    assert outcome.fields["evaluation"]["phase"] == "Passed"
    decision = outcome.fields["decisions"][-1]
    assert decision["action"] == "evaluate"
    assert decision["reason"].startswith("evaluation passed: rougeL 0.2900 vs stable 0.3000")
    assert decision["reason"].endswith("canary at 10%")
    assert "RolloutEvaluate" in kube.events


@pytest.mark.parametrize(
    ("condition", "message", "reason", "said"),
    [
        ("Failed", {"error": "the candidate version failed to answer: 500"}, "BackoffLimitExceeded",
         "the candidate version failed to answer: 500"),
        ("Failed", {}, "DeadlineExceeded", "took longer than spec.rollout.evaluation.timeout"),
        ("Complete", {"unexpected": 1}, "", "the evaluation Job left no report"),
    ],
)  # fmt: skip
def test_an_evaluation_that_fails_takes_the_failure_action_with_why(
    condition: str, message: dict[str, Any], reason: str, said: str
) -> None:
    kube = _serving()
    _finished_job(kube, condition, message, reason)
    outcome = _reconcile(kube, _model_server(_status(), **_spec()), "Standard")
    rolled = _observation(outcome, "RolledBack")
    assert rolled.reason == "EvaluationFailed"
    assert said in rolled.message
    assert outcome.fields["evaluation"]["phase"] == "Failed"


def test_a_rollout_never_takes_an_earlier_rollout_s_evaluation() -> None:
    """The same candidate rolled out again (after a cancel, or against another stable version)
    gets a Job of its own: an old verdict or an old Job is not this rollout's."""
    from datetime import timedelta as td

    kube = _serving()
    _finished_job(kube, "Complete", REPORT)  # this rollout's Job: regressed
    earlier = _status()
    earlier["rollout"]["startTime"] = (NOW - td(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {
        "revision": earlier["rollout"]["revision"],
        "phase": "Regressed",
        "job": _job_name(earlier),
    }
    outcome = _reconcile(kube, _model_server(_status(evaluation=old), **_spec()), "Standard")
    # judged now, from this rollout's Job, not held on the earlier verdict
    assert _observation(outcome, "RolledBack").reason == "EvaluationRegressed"
    assert outcome.fields["evaluation"]["job"] == _job_name()
    assert _job_name() != _job_name(earlier)


def test_a_candidate_that_never_gets_ready_fails_at_the_timeout() -> None:
    kube = _serving()
    del kube.children[("Deployment", f"{NAME}-canary-predictor")]  # KServe never rolled it
    status = _status()
    outcome = _reconcile(kube, _model_server(status, **_spec()), "Standard")
    assert outcome.fields["evaluation"]["phase"] == "Pending"  # within the timeout: waiting
    status["rollout"]["startTime"] = (NOW - timedelta(minutes=11)).strftime("%Y-%m-%dT%H:%M:%SZ")
    outcome = _reconcile(kube, _model_server(status, **_spec()), "Standard")
    rolled = _observation(outcome, "RolledBack")
    assert rolled.reason == "EvaluationFailed"
    assert "not ready within spec.rollout.evaluation.timeout (10m)" in rolled.message


def test_a_refused_job_fails_the_evaluation_saying_why() -> None:
    from kubernetes import client

    class Refusing(Kube):
        def apply(self, manifest: dict[str, Any], read_back: bool = True) -> bool:
            exc = client.ApiException(status=403, reason="Forbidden")
            exc.body = json.dumps({"message": 'jobs.batch is forbidden: exceeded quota: "jobs"'})
            raise exc

    kube = Refusing(_serving().children)
    outcome = _reconcile(kube, _model_server(_status(), **_spec()), "Standard")
    rolled = _observation(outcome, "RolledBack")
    assert rolled.reason == "EvaluationFailed"
    assert 'was refused: jobs.batch is forbidden: exceeded quota: "jobs"' in rolled.message


def test_the_held_out_losses_come_from_the_finetunejobs_metrics() -> None:
    from types import SimpleNamespace

    from kubeforge_operator.modelserver.evaluation import held_out_losses

    ftjs = {
        "v2": {"status": {"metrics": {"loss": 2.5}}},
        "v1": {"status": {"metrics": {"loss": 2}}},
    }
    kube = SimpleNamespace(get=lambda kind, ns, name: ftjs.get(name))
    ctx = SimpleNamespace(namespace=NS, kube=kube)
    spec = MODELSERVER.parse_spec(_model_server(**_spec())["spec"])
    cand = desired_revision("s3://m/v2", spec, "v2")
    stab = desired_revision("s3://m/v1", spec, "v1")
    assert held_out_losses(ctx, cand, stab) == (2.5, 2.0)  # type: ignore[arg-type]
    assert held_out_losses(ctx, desired_revision("s3://m", spec, None), stab) == (None, 2.0)  # type: ignore[arg-type]
