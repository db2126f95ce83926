"""Several LoRA adapters on one loaded base model, each addressed by the request's ``model``
(``python -m kubeforge_runtimes serve --adapter NAME=URI ...``), through the real ``openai``
client: every adapter answers as that adapter alone would (transformers' ``generate`` on it, in
this process), also when requests for different adapters and the base decode at once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from kubeforge_labs import models
from kubeforge_labs.canary import start_runtime
from kubeforge_labs.kit import Proc

pytestmark = pytest.mark.no_cluster  # real processes only: run beside the cluster's tests

NAME = "support"
PROMPTS = [
    "ticket: the vpn keeps disconnecting after the move. resolution:",
    "ticket: the printer shows an error after an update. resolution:",
    "ticket: the laptop does not start after lunch. resolution:",
]
TOKENS = 8


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("adapters")
    return {
        "base": models.base_model(work / "base"),
        "tickets": models.ticket_adapter(work / "tickets"),
        "shuffled": models.ticket_adapter(work / "shuffled", shuffled=True),
    }


@pytest.fixture(scope="module")
def runtime(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    adapters = {"tickets": folders["tickets"], "shuffled": folders["shuffled"]}
    work = tmp_path_factory.mktemp("adapters-runtime")
    proc = start_runtime(
        work, folders["base"], name=NAME,
        namespace="team-a", revision="radapters", max_new_tokens=TOKENS, adapters=adapters,
    )  # fmt: skip
    assert len(list((work / "tmp").glob("kubeforge-adapters-*"))) == 1
    yield proc
    proc.stop()
    # what the runtime fetched its adapters into goes when it stops (SIGTERM), not left behind
    # (torch's own cache, torchinductor_<user>, stays, as it does in /tmp)
    assert not list((work / "tmp").glob("kubeforge-adapters-*")), "adapters' directory left"


@pytest.fixture(scope="module")
def expected(folders: dict[str, Path]) -> dict[str, list[str]]:
    """Each served name's greedy answers, from ``generate`` on that model alone."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folders["base"])

    def answers(model: object) -> list[str]:
        out = []
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt")
            gen = model.generate(  # type: ignore[attr-defined]
                **ids, max_new_tokens=TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
            out.append(
                tokenizer.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            )
        return out

    def base() -> object:
        return AutoModelForCausalLM.from_pretrained(folders["base"])

    return {
        NAME: answers(base()),
        "tickets": answers(PeftModel.from_pretrained(base(), folders["tickets"])),
        "shuffled": answers(PeftModel.from_pretrained(base(), folders["shuffled"])),
    }


def client(runtime: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{runtime.url}/openai/v1", api_key="unused", max_retries=0)


def ask(runtime: Proc, model: str, prompt: str) -> str:
    done = client(runtime).completions.create(
        model=model, prompt=prompt, max_tokens=TOKENS, temperature=0
    )
    return done.choices[0].text


def test_each_adapter_answers_as_it_would_alone(
    runtime: Proc, expected: dict[str, list[str]]
) -> None:
    listed = [m.id for m in client(runtime).models.list().data]
    assert listed == [NAME, "shuffled", "tickets"]
    # the adapters really differ from the base and from each other
    assert len({tuple(v) for v in expected.values()}) == 3, expected
    for model, answers in expected.items():
        assert [ask(runtime, model, p) for p in PROMPTS] == answers, model


def test_requests_for_different_adapters_decode_together_correctly(
    runtime: Proc, expected: dict[str, list[str]]
) -> None:
    asks = [(model, i) for model in expected for i in range(len(PROMPTS))] * 2
    with ThreadPoolExecutor(len(asks)) as pool:
        got = list(pool.map(lambda a: ask(runtime, a[0], PROMPTS[a[1]]), asks))
    assert got == [expected[model][i] for model, i in asks]


def test_the_base_on_v1_and_an_unknown_name_is_404_listing_the_served_ones(
    runtime: Proc, expected: dict[str, list[str]]
) -> None:
    import httpx

    v1 = httpx.post(
        f"{runtime.url}/v1/models/{NAME}:predict", json={"instances": [PROMPTS[0]]}, timeout=60
    )
    assert v1.json()["predictions"] == [expected[NAME][0]]
    with pytest.raises(openai.NotFoundError) as err:
        ask(runtime, "billing", PROMPTS[0])
    assert "`billing` does not exist; this server serves `support`, `shuffled`, `tickets`" in str(
        err.value
    )


def _samples(runtime: Proc, metric: str) -> dict[tuple[str, str], float]:
    """``metric``'s value by (adapter, code) from the runtime's /metrics (code "" where the
    metric has none)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{runtime.url}/metrics", timeout=10).text
    return {
        (s.labels["adapter"], s.labels.get("code", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric
    }


def test_faults_on_one_adapter_spare_the_others_and_each_is_counted_apart(
    runtime: Proc, expected: dict[str, list[str]]
) -> None:
    """One adapter going bad (the faults scoped to it by name) fails its own requests alone;
    the request and token metrics say which adapter each request named (the label a canary of
    one adapter is judged by), and a name that is not served adds no label value."""
    from kubeforge_labs.canary import set_faults

    requests = "kubeforge_inference_requests_total"
    first_tokens = "vllm:time_to_first_token_seconds_count"
    before, tokens_before = _samples(runtime, requests), _samples(runtime, first_tokens)
    set_faults(runtime, error_rate=1.0, models=("shuffled",))
    try:
        with pytest.raises(openai.InternalServerError) as err:
            ask(runtime, "shuffled", PROMPTS[0])
        assert err.value.body == {  # OpenAI's error shape
            "message": "injected fault (fault injection)",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        assert ask(runtime, "tickets", PROMPTS[0]) == expected["tickets"][0]
        assert ask(runtime, NAME, PROMPTS[0]) == expected[NAME][0]
        with pytest.raises(openai.NotFoundError):
            ask(runtime, "billing", PROMPTS[0])
    finally:
        set_faults(runtime)
    after, tokens_after = _samples(runtime, requests), _samples(runtime, first_tokens)
    grew = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key)}
    assert grew == {("shuffled", "500"): 1, ("tickets", "200"): 1, ("", "200"): 1, ("", "404"): 1}
    assert {adapter for adapter, _ in after} == {"", "shuffled", "tickets"}
    # the failed request generated nothing; the others their first token each
    assert tokens_after[("tickets", "")] == tokens_before[("tickets", "")] + 1
    assert tokens_after[("", "")] == tokens_before[("", "")] + 1
    assert tokens_after[("shuffled", "")] == tokens_before[("shuffled", "")]
