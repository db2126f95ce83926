"""The evaluation a ModelServer runs before a candidate gets traffic
(``python -m kubeforge_runtimes evaluate``, the evaluation Job's command), against two real
runtime processes: a version fine-tuned on the support tickets and a deliberately worse one
trained on the same tickets with their words shuffled. The operator's own ``judge`` decides."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeforge_crds.contracts.evaluation import EvaluationReport
from kubeforge_crds.modelserver import Evaluation
from kubeforge_labs import kserve_hf, models
from kubeforge_labs.canary import set_faults, start_runtime
from kubeforge_labs.kit import Proc, free_port, http_ok, launch
from kubeforge_operator.modelserver.evaluation import judge

pytestmark = pytest.mark.no_cluster  # real processes only: run beside the cluster's tests

NAME = "support-bot"
POLICY = Evaluation.model_validate({"prompts": {"configMap": "prompts"}, "tolerance": 0.05})


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    work = tmp_path_factory.mktemp("evaluation")
    good = models.ticket_model(work / "good")
    worse = models.ticket_model(work / "worse", shuffled=True)
    procs = {
        "good": start_runtime(
            work, good, name=NAME, namespace="team-a", revision="rgood", max_new_tokens=8
        ),
        "worse": start_runtime(
            work, worse, name=NAME, namespace="team-a", revision="rworse", max_new_tokens=8
        ),
    }
    yield procs
    for proc in procs.values():
        proc.stop()


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in models.ticket_prompts(16)))
    return path


def evaluate(
    prompts: Path, candidate: str, stable: str, tmp_path: Path, model: str = NAME
) -> tuple[int, dict[str, object]]:
    """The Job's command, given the predictors' root URLs as the operator gives them; its exit
    code and what it left as the termination message."""
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [
            sys.executable, "-m", "kubeforge_runtimes", "evaluate",
            f"--prompts={prompts}", f"--candidate={candidate}", f"--stable={stable}",
            f"--model={model}", "--max-tokens=8",
            f"--termination-log={log}",
        ],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    return done.returncode, json.loads(log.read_text())


def test_the_worse_version_regresses_and_the_good_one_passes(
    runtimes: dict[str, Proc], prompts: Path, tmp_path: Path
) -> None:
    good, worse = runtimes["good"].url, runtimes["worse"].url
    code, left = evaluate(prompts, worse, good, tmp_path)
    assert code == 0, left
    report = EvaluationReport.model_validate(left)
    assert report.prompts == report.candidate.answered == report.stable.answered == 16
    # the good version answers with fixes; the shuffled one does not
    assert report.stable.score > 0.15
    assert report.candidate.score < report.stable.score - 0.1
    assert report.worst
    assert report.worst[0]["prompt"].startswith("ticket: ")
    passed, said = judge(POLICY, report, None, None)
    assert not passed
    assert f"rougeL {report.candidate.score:.4f} vs stable {report.stable.score:.4f}" in said

    # the same good model as candidate and stable: the same greedy answers, the same score
    code, left = evaluate(prompts, good, good, tmp_path)
    again = EvaluationReport.model_validate(left)
    assert again.candidate.score == again.stable.score == report.stable.score
    assert judge(POLICY, again, None, None)[0]


def test_a_malformed_prompt_set_is_named_by_line(runtimes: dict[str, Proc], tmp_path: Path) -> None:
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "a", "reference": "b"}\n{"prompt": "no reference"}\n')
    code, left = evaluate(bad, runtimes["good"].url, runtimes["good"].url, tmp_path)
    assert code == 2
    assert "line 2: reference: Field required" in str(left["error"])


def test_a_model_the_version_does_not_serve_is_named_with_what_it_serves(
    runtimes: dict[str, Proc], prompts: Path, tmp_path: Path
) -> None:
    good = runtimes["good"].url
    code, left = evaluate(prompts, good, good, tmp_path, "other")
    assert code == 2
    assert str(left["error"]).startswith(
        f"the candidate version at {good}/openai/v1 does not serve the model 'other' (it serves "
        f"{NAME}): "
    )


def test_a_version_that_fails_its_answers_is_named_with_the_status(
    runtimes: dict[str, Proc], prompts: Path, tmp_path: Path
) -> None:
    set_faults(runtimes["worse"], error_rate=1.0)
    try:
        code, left = evaluate(prompts, runtimes["good"].url, runtimes["worse"].url, tmp_path)
    finally:
        set_faults(runtimes["worse"], error_rate=0.0)
    assert code == 2
    error = str(left["error"])
    assert error.startswith("the stable version failed to answer"), error
    assert "500" in error


def test_a_server_without_an_openai_api_is_named_with_the_routes_tried(
    runtimes: dict[str, Proc], prompts: Path, tmp_path: Path
) -> None:
    # a real HTTP server that serves neither route (Python's own file server, an empty folder)
    (tmp_path / "empty").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    files = launch(
        "file server", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        tmp_path / "files.log", cwd=tmp_path / "empty", url=url, ready=lambda: http_ok(url),
    )  # fmt: skip
    try:
        code, left = evaluate(prompts, url, runtimes["good"].url, tmp_path)
    finally:
        files.stop()
    assert code == 2
    assert str(left["error"]) == (
        f"the candidate version at {url} serves no OpenAI-compatible API "
        "(GET /openai/v1/models answered 404; GET /v1/models answered 404)"
    )


@pytest.mark.slow  # KServe's server starts in ~15 s, two evaluations: make test-slow (CI runs it)
def test_kserve_s_own_hugging_face_server_is_evaluated_as_the_built_in_runtime_is(
    runtimes: dict[str, Proc], prompts: Path, tmp_path: Path
) -> None:
    """The candidate served by KServe's own LLM runtime (its Hugging Face server, transformers
    backend, from KServe's source: ``kubeforge_labs.kserve_hf``), the stable version by
    kubeforge's: the Job finds KServe's API, and the same model answers every prompt the same
    greedy way on both, so the scores match and the rollout goes on. A model name KServe
    does not serve is named with the one it does, from KServe's own answer."""
    version, pythonpath = kserve_hf.prepare()
    good = runtimes["good"].url
    served = models.ticket_model(tmp_path / "good")  # the good runtime's model (a cached copy)
    kserve = kserve_hf.start(tmp_path / "kserve-hf", served, NAME, pythonpath)
    try:
        code, left = evaluate(prompts, kserve.url, good, tmp_path)
        assert code == 0, (version, left)
        report = EvaluationReport.model_validate(left)
        assert report.candidate.answered == report.stable.answered == report.prompts == 16
        # two decoding implementations (KServe's `generate`, the runtime's own loop) of one
        # model: the same greedy answers (equal scores when run here), a near tie in a logit
        # allowed to flip one token
        assert abs(report.candidate.score - report.stable.score) < 0.02, report
        assert report.stable.score > 0.15, report
        assert judge(POLICY, report, None, None)[0]
        code, left = evaluate(prompts, kserve.url, good, tmp_path, "other")
    finally:
        kserve.stop()
    assert code == 2
    assert str(left["error"]).startswith(
        f"the candidate version at {kserve.url}/openai/v1 does not serve the model 'other' "
        f"(it serves {NAME}): "
    ), left
