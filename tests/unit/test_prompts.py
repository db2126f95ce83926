"""A prompt's ids by the Rust tokenizer's own ``encode`` are the ids transformers' ``__call__``
gives, and ``__call__`` is taken wherever they could differ."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from kubeforge_runtimes.prompts import direct_encoder, prompt_ids

BOS = "<s>"
TEXTS = [
    "the vpn fails after the update",
    "  leading and trailing spaces  ",
    "naïve café \u2013 ünïcödé 🚀",
    f"a {BOS} in the middle",
    "",
]


def build(bos_first: bool, **kwargs: Any) -> PreTrainedTokenizerFast:
    """A small byte-level BPE; ``bos_first``: a BOS before every text, as Llama's tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXTS * 3, trainer=trainer)
    if bos_first:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, **kwargs)  # type: ignore[no-untyped-call]


def called(tokenizer: Any, text: str, special: bool) -> torch.Tensor:
    encoded = tokenizer(text, add_special_tokens=special, return_tensors="pt")
    ids: torch.Tensor = encoded["input_ids"]
    return ids


@pytest.mark.parametrize("bos_first", [True, False])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("special", [True, False])
def test_the_direct_ids_are_the_call_s(bos_first: bool, split: bool, special: bool) -> None:
    tokenizer = build(bos_first, split_special_tokens=split)
    assert direct_encoder(tokenizer) is not None
    for text in TEXTS:
        ids = prompt_ids(tokenizer, text, special)
        assert ids.dtype == torch.long
        assert ids.tolist() == called(tokenizer, text, special).tolist(), text
    bos = tokenizer.convert_tokens_to_ids(BOS)
    assert (prompt_ids(tokenizer, "x", True)[0, 0].item() == bos) is bos_first
    assert prompt_ids(tokenizer, "x", False)[0, 0].item() != bos


def test_truncation_left_set_by_another_call_sends_the_prompt_through_call() -> None:
    tokenizer = build(True)
    text = TEXTS[0]
    whole = called(tokenizer, text, True).tolist()
    tokenizer(text, truncation=True, max_length=3)  # leaves truncation set on the Rust tokenizer
    assert tokenizer.backend_tokenizer.truncation is not None
    assert direct_encoder(tokenizer) is None
    assert prompt_ids(tokenizer, text).tolist() == whole  # not cut to 3
    assert direct_encoder(tokenizer) is not None  # __call__ without truncation unset it


def test_a_tokenizer_that_overrides_call_is_called() -> None:
    class Lowering(PreTrainedTokenizerFast):
        def __call__(self, text: Any = None, *args: Any, **kwargs: Any) -> Any:
            return super().__call__(text.lower(), *args, **kwargs)

    base = build(False)
    tokenizer = Lowering(tokenizer_object=base.backend_tokenizer, bos_token=BOS)  # type: ignore[no-untyped-call]
    assert direct_encoder(tokenizer) is None
    assert prompt_ids(tokenizer, "VPN").tolist() == called(tokenizer, "vpn", True).tolist()


def test_a_tokenizer_of_another_kind_is_called() -> None:
    class Words:
        def __call__(self, text: str, add_special_tokens: bool, return_tensors: str) -> Any:
            assert return_tensors == "pt"
            return {"input_ids": torch.tensor([[len(w) for w in text.split()]])}

    assert direct_encoder(Words()) is None
    assert prompt_ids(Words(), "ab c").tolist() == [[2, 1]]


TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def test_a_chat_template_s_bos_is_the_prompt_s_only_one() -> None:
    """The rendered chat gets no special tokens on top unless asked: a Llama-style tokenizer
    (a BOS before every text) and a template that writes the BOS gave the model two."""
    from kubeforge_runtimes.openai_requests import Message, chat_ids

    tokenizer = build(True)
    tokenizer.chat_template = TEMPLATE
    bos = tokenizer.convert_tokens_to_ids(BOS)
    said = [Message(role="user", content="the vpn fails")]
    ids = chat_ids(tokenizer, said)[0].tolist()
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": "the vpn fails"}], add_generation_prompt=True,
        tokenize=True, return_dict=False,
    )  # fmt: skip
    assert ids == templated
    assert ids[0] == bos
    assert ids.count(bos) == 1
    assert chat_ids(tokenizer, said, special=True)[0].tolist() == [bos, *ids]
    assert chat_ids(tokenizer, said, special=False)[0].tolist() == ids
