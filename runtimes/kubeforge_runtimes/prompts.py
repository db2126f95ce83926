"""A prompt's token ids, as transformers' tokenizer makes them, by the Rust tokenizer's own call.

``tokenizer(text)`` goes through transformers' batch encoding for one text: padding and
truncation set on the Rust tokenizer, a ``BatchEncoding`` built, its lists converted to a
tensor: 81 us in a loop on the 2-core VM, 120-190 us of the event loop's CPU in the runtime,
before the prefill can start; the Rust tokenizer's ``encode``, which it calls, 30-40 us. So the
runtime calls ``encode`` itself, where that is exactly what ``__call__`` would do: a tokenizer
of transformers' tokenizers backend whose ``__call__`` and ``_encode_plus`` are the backend's
own (Code Llama's, LayoutLM's and a few more override them), with no input/target mode switch,
and whose Rust tokenizer has no truncation or padding set (``__call__`` without them unsets
both) and splits special tokens as ``__call__`` would. Anything else goes through ``__call__``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedTokenizerBase
from transformers.tokenization_utils_tokenizers import TokenizersBackend  # transformers 5


def direct_encoder(tokenizer: Any) -> Any:
    """The Rust tokenizer whose ``encode`` gives what ``tokenizer(text)`` gives now, else None.
    Checked at each prompt: another call with truncation or padding leaves them set."""
    kind = type(tokenizer)
    if not isinstance(tokenizer, TokenizersBackend):
        return None
    if kind.__call__ is not PreTrainedTokenizerBase.__call__:
        return None
    if kind._encode_plus is not TokenizersBackend._encode_plus:
        return None
    if hasattr(tokenizer, "_switch_to_input_mode"):
        return None
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None or backend.padding is not None:
        return None
    if backend.encode_special_tokens != bool(tokenizer.split_special_tokens):
        return None
    return backend


def prompt_ids(tokenizer: Any, text: str, add_special_tokens: bool = True) -> torch.Tensor:
    """``text``'s ids, a batch of one (``tokenizer(text, return_tensors="pt")["input_ids"]``)."""
    backend = direct_encoder(tokenizer)
    if backend is None:
        encoded = tokenizer(text, add_special_tokens=add_special_tokens, return_tensors="pt")
        ids_tensor: torch.Tensor = encoded["input_ids"]
        return ids_tensor
    ids = backend.encode(text, add_special_tokens=add_special_tokens).ids
    return torch.tensor([ids], dtype=torch.long)
