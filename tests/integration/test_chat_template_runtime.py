"""A model with a chat template, served by the built-in runtime and asked by the ``openai``
client: the template writes the conversation and its special tokens, the tokenizer adds none
again (a Llama-style tokenizer puts a BOS before every text it encodes; a template that begins
with ``{{ bos_token }}`` then got two), a completion gets the tokenizer's BOS, vLLM's
``add_special_tokens`` overrides either, and a conversation the template refuses is a 400."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from kubeforge_labs.canary import start_runtime
from kubeforge_labs.kit import Proc

pytestmark = pytest.mark.no_cluster  # real processes only: run beside the cluster's tests

NAME = "chat-llama-style"
# Llama 2's shape of template: the BOS first, a turn per line, no system role
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('this model takes no system role') }}"
    "{% endif %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
MESSAGES = [{"role": "user", "content": "the vpn fails after the update"}]


@pytest.fixture(scope="module")
def chat_model(tiny_base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 with a tokenizer that adds a BOS to every text (as Llama's and Mistral's
    do, by their post-processor) and the template above."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    target = tmp_path_factory.mktemp("chat-model") / "model"
    shutil.copytree(tiny_base_model, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def tokenizer(chat_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_model)


@pytest.fixture(scope="module")
def runtime(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    work = tmp_path_factory.mktemp("chat-runtime")
    proc = start_runtime(
        work, chat_model, name=NAME, namespace="team-a", revision="rchat", max_new_tokens=6
    )
    yield proc
    proc.stop()


@pytest.fixture
def client(runtime: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{runtime.url}/openai/v1", api_key="unused", max_retries=0)


def test_the_template_s_bos_is_the_prompt_s_only_one(client: openai.OpenAI, tokenizer: Any) -> None:
    templated = tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert templated[0] == tokenizer.bos_token_id
    assert templated[1] != tokenizer.bos_token_id
    whole = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == len(templated)
    stream = client.chat.completions.create(
        model=NAME, messages=MESSAGES, max_tokens=4, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}, temperature=0,
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == len(templated)
    # vLLM's extension asks for the tokenizer's own on top
    doubled = client.chat.completions.create(
        model=NAME, messages=MESSAGES, max_tokens=4,  # type: ignore[arg-type]
        extra_body={"add_special_tokens": True},
    )  # fmt: skip
    assert doubled.usage is not None
    assert doubled.usage.prompt_tokens == len(templated) + 1


def test_a_completion_gets_the_tokenizer_s_bos(client: openai.OpenAI, tokenizer: Any) -> None:
    prompt = "ticket: printer jams. resolution:"
    ids = tokenizer(prompt)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    done = client.completions.create(model=NAME, prompt=prompt, max_tokens=3)
    assert done.usage is not None
    assert done.usage.prompt_tokens == len(ids)
    bare = client.completions.create(
        model=NAME, prompt=prompt, max_tokens=3, extra_body={"add_special_tokens": False}
    )
    assert bare.usage is not None
    assert bare.usage.prompt_tokens == len(ids) - 1


def test_a_conversation_the_template_refuses_is_a_400_and_the_server_serves_on(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=NAME,
            messages=[{"role": "system", "content": "be brief"}, *MESSAGES],  # type: ignore[list-item]
            max_tokens=4,
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "messages"
    assert "chat template refused them: this model takes no system role" in body["message"]
    after = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
    assert after.choices[0].message.content is not None


def test_add_special_tokens_must_be_a_boolean(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(
            model=NAME, prompt="x", max_tokens=2, extra_body={"add_special_tokens": "maybe"}
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "add_special_tokens"
