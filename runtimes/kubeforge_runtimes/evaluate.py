"""``python -m kubeforge_runtimes evaluate``: a ModelServer's candidate and stable version answer
the same prompt set through their own OpenAI-compatible endpoints (greedy, so the answers are
repeatable), each answer is scored against the prompt's reference with ROUGE-L
(``kubeforge_pipelines.scoring``, as the FineTuneJob's evaluation scores), and the scores are
left as the termination message for the operator to judge (``kubeforge_crds.contracts.evaluation``).

The operator runs it as a Job once the candidate's predictor is ready and before it gets any
traffic; the requests go to the predictors' own Services, never through the route users reach.
It is given each predictor's root URL and finds where its OpenAI-compatible API is
(:func:`openai_base`): kubeforge's runtime and KServe's Hugging Face server put it under
``/openai/v1`` (beside KServe's own ``/v1`` protocol), a plain ``vllm serve`` container at
``/v1``."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from kubeforge_crds.contracts.evaluation import (
    EvaluationReport,
    PromptCase,
    VersionScore,
    parse_prompts,
)
from kubeforge_pipelines.scoring import mean, rouge_l

CONCURRENCY = 4  # requests at a time per version: the runtime decodes them as one batch
# where OpenAI-compatible servers put their routes, in the order they are tried
OPENAI_ROUTES = ("/openai/v1", "/v1")
Answerer = Callable[[str], str]


class EvaluationError(RuntimeError):
    """A version could not be evaluated (its endpoint failed); the message says which."""


def _model_ids(answer: httpx.Response) -> list[str] | None:
    """The model ids of an OpenAI model list (``{"data": [{"id": ...}]}``), or None when the
    answer is not one (KServe's v1 protocol answers ``GET /v1/models`` with ``{"models":
    [...]}``)."""
    try:
        body: Any = answer.json()
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [str(m.get("id")) for m in data if isinstance(m, dict)]


def openai_base(root: str, name: str, model: str, client: httpx.Client) -> str:
    """The base URL of the OpenAI-compatible API of the ``name`` version at ``root``: the first of
    :data:`OPENAI_ROUTES` whose ``models`` route answers with OpenAI's model list, which must
    include ``model``; a route answered 404 (or 405) is not there, any other failure is the
    version's and said so. A ``root`` that already ends with one of the routes is used as is."""
    root = root.rstrip("/")
    routes = [""] if root.endswith(OPENAI_ROUTES) else list(OPENAI_ROUTES)
    tried: list[str] = []
    for route in routes:
        url = f"{root}{route}/models"
        try:
            answer = client.get(url)
        except httpx.TimeoutException as err:
            raise EvaluationError(f"the {name} version did not answer GET {url} in time") from err
        except httpx.HTTPError as err:
            raise EvaluationError(f"the {name} version at {root} cannot be reached: {err}") from err
        if answer.status_code in (404, 405):
            tried.append(f"GET {route}/models answered {answer.status_code}")
            continue
        if answer.status_code != 200:
            raise EvaluationError(
                f"the {name} version answered GET {url} with {answer.status_code}: "
                f"{answer.text[:300]}"
            )
        ids = _model_ids(answer)
        if ids is None:
            tried.append(f"GET {route}/models answered 200 without OpenAI's model list")
            continue
        if model not in ids:
            raise EvaluationError(
                f"the {name} version at {root}{route} does not serve the model {model!r} (it "
                f"serves {', '.join(ids) or 'none'}): the evaluation asks for the ModelServer's "
                "name, or spec.rollout.evaluation.model's adapter; a ServingRuntime must serve "
                "the model under that name (vLLM: --served-model-name)"
            )
        return f"{root}{route}"
    raise EvaluationError(
        f"the {name} version at {root} serves no OpenAI-compatible API ({'; '.join(tried)})"
    )


def openai_answerer(base_url: str, model: str, max_tokens: int, timeout: float) -> Answerer:
    """Answers from the OpenAI-compatible ``completions`` route at ``base_url`` (greedy)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="unused", timeout=timeout, max_retries=3)

    def answer(prompt: str) -> str:
        done = client.completions.create(
            model=model, prompt=prompt, max_tokens=max_tokens, temperature=0
        )
        return done.choices[0].text

    return answer


def answer_all(name: str, answerer: Answerer, cases: list[PromptCase]) -> list[str]:
    def one(case: PromptCase) -> str:
        try:
            return answerer(case.prompt)
        except Exception as err:  # the client's errors name the status and the server's message
            raise EvaluationError(f"the {name} version failed to answer: {err}") from err

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(one, cases))


def evaluate(cases: list[PromptCase], candidate: Answerer, stable: Answerer) -> EvaluationReport:
    """Both versions' mean ROUGE-L over ``cases``, and the candidate's worst answers."""
    references = [c.reference for c in cases]
    ours = rouge_l(answer_all("candidate", candidate, cases), references)
    theirs = rouge_l(answer_all("stable", stable, cases), references)
    worst = sorted(range(len(cases)), key=lambda i: ours[i] - theirs[i])[:3]
    return EvaluationReport(
        metric="rougeL",
        prompts=len(cases),
        candidate=VersionScore(score=mean(ours), answered=len(ours)),
        stable=VersionScore(score=mean(theirs), answered=len(theirs)),
        worst=[
            {
                "prompt": cases[i].prompt[:120],
                "candidate": round(ours[i], 4),
                "stable": round(theirs[i], 4),
            }
            for i in worst
            if ours[i] < theirs[i]
        ],
    )


def run(
    prompts: Path,
    candidate_url: str,
    stable_url: str,
    model: str,
    max_tokens: int,
    timeout: float = 120.0,
) -> EvaluationReport:
    """The whole evaluation from the prompt file and the two predictors' root URLs."""
    cases = parse_prompts(prompts.read_text(encoding="utf-8"))
    # retries: connection errors only (a predictor's Service that is not routable yet)
    with httpx.Client(timeout=timeout, transport=httpx.HTTPTransport(retries=3)) as client:
        candidate = openai_base(candidate_url, "candidate", model, client)
        stable = openai_base(stable_url, "stable", model, client)
    return evaluate(
        cases,
        openai_answerer(candidate, model, max_tokens, timeout),
        openai_answerer(stable, model, max_tokens, timeout),
    )
