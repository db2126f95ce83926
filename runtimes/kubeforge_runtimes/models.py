"""The models the built-in runtime serves, as ``kserve.Model`` subclasses: Hugging Face causal LMs
(a fully tuned model, a merged model, or a peft adapter on its base) and scikit-learn estimators.

``find_model`` reads the directory a FineTuneJob registers (``vN/`` with ``merged/``, ``model/``
or ``adapter/`` and ``lineage.json``) or a plain model directory, and says what it found or why
it cannot serve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from kserve import Model


class ModelDirError(ValueError):
    """A model directory the runtime cannot serve, with what it expected."""


@dataclass(frozen=True)
class FoundModel:
    format: str  # transformers | peft | sklearn
    path: Path
    base: str | None = None  # the base model URI of a peft adapter


def _base_from_lineage(root: Path) -> str | None:
    lineage = root / "lineage.json"
    if lineage.is_file():
        base = json.loads(lineage.read_text()).get("baseModel")
        return str(base) if base else None
    return None


def find_model(root: Path, expected: str | None = None, base_uri: str | None = None) -> FoundModel:
    """What ``root`` holds, preferring a merged model over an adapter. ``expected`` (the
    ModelServer's spec.runtime.modelFormat) must agree with it when given."""
    if not root.is_dir():
        raise ModelDirError(f"model directory {root} does not exist")
    found: FoundModel | None = None
    if (root / "model.joblib").is_file():
        found = FoundModel("sklearn", root / "model.joblib")
    elif (root / "merged" / "config.json").is_file() and expected != "peft":
        found = FoundModel("transformers", root / "merged")
    elif (root / "model" / "config.json").is_file():
        found = FoundModel("transformers", root / "model")
    elif (root / "adapter" / "adapter_config.json").is_file():
        found = FoundModel("peft", root / "adapter", base_uri or _base_from_lineage(root))
    elif (root / "config.json").is_file():
        found = FoundModel("transformers", root)
    elif (root / "adapter_config.json").is_file():
        found = FoundModel("peft", root, base_uri or _base_from_lineage(root.parent))
    if found is None:
        raise ModelDirError(
            f"{root} holds no model: expected model.joblib (scikit-learn), config.json "
            "(transformers), adapter_config.json (peft), or a registered version with merged/, "
            "model/ or adapter/"
        )
    if (
        expected
        and expected != found.format
        and not (
            expected == "peft" and found.format == "transformers" and found.path.name == "merged"
        )
    ):
        raise ModelDirError(
            f"spec.runtime.modelFormat is {expected!r} but {root} holds a {found.format} "
            f"model ({found.path.name})"
        )
    if found.format == "peft" and not found.base:
        raise ModelDirError(
            f"{found.path} is a peft adapter but its base model is unknown: no lineage.json "
            "beside it; set the base model URI (KUBEFORGE_RUNTIME_BASE_MODEL_URI)"
        )
    return found


def v1_body(payload: Any) -> dict[str, Any]:
    """The v1 request body: kserve passes undecoded bytes when the client did not send
    ``content-type: application/json``; those are decoded here rather than failing with 500."""
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except ValueError as err:
            raise InvalidInput(f"the request body is not JSON: {err}") from err
    if not isinstance(payload, dict):
        raise InvalidInput('expected a JSON object with "instances"')
    return payload


def _texts(instances: Any) -> list[str]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('expected "instances": a non-empty list of strings or {"text": ...}')
    out = []
    for i, item in enumerate(instances):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise InvalidInput(f"instances[{i}]: expected a string or an object with 'text'")
        out.append(text)
    return out


MAX_TEXT_EXPLANATIONS = 4  # prompts per :explain request (one forward pass per token each)


class CausalLM(Model):  # type: ignore[misc]
    """Text generation with a causal LM: v1 ``instances`` of strings, v2 a BYTES input."""

    def __init__(
        self,
        name: str,
        found: FoundModel,
        max_new_tokens: int = 32,
        adapters: dict[str, Path] | None = None,
    ) -> None:
        super().__init__(name)
        self.found = found
        self.max_new_tokens = max_new_tokens
        # LoRA adapters loaded on this (base) model, by the name requests give as `model`
        self.adapters = dict(adapters or {})
        self._lock = threading.Lock()  # one forward pass at a time per process
        self.model: Any = None
        self.tokenizer: Any = None
        self.batcher: Any = None  # the OpenAI API's continuous batching, when the model allows

    def load(self) -> bool:
        from kubeforge_pipelines import storage
        from kubeforge_pipelines.train import load_trained
        from kubeforge_runtimes import threads

        threads.configure()
        if self.found.format == "peft":
            base = storage.fetch_dir(str(self.found.base), Path("/tmp"))  # noqa: S108
            self.model, self.tokenizer = load_trained(base, self.found.path)
        else:
            self.model, self.tokenizer = load_trained(self.found.path, None)
        if self.adapters:
            self.model = load_adapters(self.model, self.adapters)
        self.model.eval()
        self.generate(["warm up"], 2)  # the first call is slow; no request should pay for it
        self.batcher = self._batcher()
        self.ready = True
        return True

    def _batcher(self) -> Any:
        """Continuous batching for the OpenAI-compatible API (``batching``), or None for a model
        it cannot decode (a prompt-tuned adapter: ``generate``, one request at a time)."""
        from kubeforge_runtimes import threads
        from kubeforge_runtimes.batching import Batcher, skip_padding_check, supports
        from kubeforge_runtimes.generation import end_tokens

        if not supports(self.model):
            return None
        skip_padding_check(self.model)
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        ends = end_tokens(self.model, self.tokenizer)
        return Batcher(
            self.model, self._lock, ends, int(pad or 0), prefill_threads=threads.prefill_threads()
        )

    def base_only(self) -> Any:
        """With adapters loaded by name, the v1/v2 protocols and explanations serve the base
        model: its adapters off (inside the model's lock) for the call."""
        return self.model.disable_adapter() if self.adapters else contextlib.nullcontext()

    @property
    def context(self) -> int:
        """The model's context in tokens: the config's, else the tokenizer's (configs name it
        differently), less the virtual tokens of a prompt-tuned adapter."""
        from kubeforge_pipelines.train import virtual_tokens

        config = self.model.config
        context = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        whole = int(context or min(self.tokenizer.model_max_length, 1 << 20))
        return whole - virtual_tokens(self.model)

    def check_prompts(self, texts: list[str], max_new_tokens: int | None = None) -> None:
        """A prompt that, with the answer's tokens, would not fit the model's context is a 400
        naming both numbers (the model itself would fail with an index error)."""
        n = max(1, min(int(max_new_tokens or self.max_new_tokens), 512))
        for i, text in enumerate(texts):
            tokens = len(self.tokenizer(text)["input_ids"])
            if tokens + n > self.context:
                raise InvalidInput(
                    f"instances[{i}]: the prompt has {tokens} tokens and {n} new ones were "
                    f"asked for, beyond the model's context of {self.context} tokens"
                )

    def generate(self, texts: list[str], max_new_tokens: int | None = None) -> list[str]:
        import torch

        from kubeforge_runtimes import threads

        threads.pin()  # run in a worker thread (asyncio.to_thread): the decoding steps' count
        n = max(1, min(int(max_new_tokens or self.max_new_tokens), 512))
        out = []
        with self._lock, torch.no_grad(), self.base_only():
            for text in texts:
                ids = self.tokenizer(text, return_tensors="pt")
                gen = self.model.generate(
                    **ids,
                    max_new_tokens=n,
                    do_sample=False,
                    pad_token_id=self.tokenizer.eos_token_id,
                )
                new = gen[0, ids["input_ids"].shape[1] :]
                out.append(self.tokenizer.decode(new, skip_special_tokens=True))
        return out

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            if not payload.inputs:
                raise InvalidInput("expected one BYTES input with the prompts")
            inp = payload.inputs[0]
            if inp.datatype != "BYTES":
                raise InvalidInput(
                    f"input {inp.name!r}: datatype must be BYTES, not {inp.datatype}"
                )
            texts = [t.decode() if isinstance(t, bytes) else str(t) for t in inp.data]
            params = payload.parameters or {}
            self.check_prompts(texts, params.get("max_new_tokens"))
            result = await asyncio.to_thread(self.generate, texts, params.get("max_new_tokens"))
            output = InferOutput("generated_text", [len(result)], "BYTES", data=result)
            return _response(payload, self.name, output)
        payload = v1_body(payload)
        texts = _texts(payload.get("instances"))
        params = payload.get("parameters") or {}
        self.check_prompts(texts, params.get("max_new_tokens"))
        result = await asyncio.to_thread(self.generate, texts, params.get("max_new_tokens"))
        return {"predictions": result}

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Each prompt's token attributions for the model's own answer
        (``kubeforge_runtimes.explain.explain_text``); 400 for a prompt too long to explain."""
        texts = _texts(v1_body(payload).get("instances"))
        if len(texts) > MAX_TEXT_EXPLANATIONS:
            raise InvalidInput(
                f"{len(texts)} prompts: at most {MAX_TEXT_EXPLANATIONS} are explained per request"
            )
        return {"explanations": await asyncio.to_thread(self._explain, texts)}

    def _explain(self, texts: list[str]) -> list[dict[str, Any]]:
        from kubeforge_runtimes import threads
        from kubeforge_runtimes.explain import MAX_PROMPT_TOKENS, explain_text

        threads.pin()  # as generate
        out = []
        for text in texts:
            n_tokens = len(self.tokenizer(text)["input_ids"])
            if n_tokens > MAX_PROMPT_TOKENS:  # before generating: it may not even fit
                raise InvalidInput(
                    f"the prompt has {n_tokens} tokens: at most {MAX_PROMPT_TOKENS} are explained"
                )
            answer = self.generate([text])[0]
            with self._lock, self.base_only():
                try:
                    out.append(explain_text(self.model, self.tokenizer, text, answer))
                except ValueError as err:
                    raise InvalidInput(str(err)) from err
        return out


class Sklearn(Model):  # type: ignore[misc]
    """A scikit-learn estimator saved with joblib: v1 ``instances`` rows, v2 one FP32/FP64/INT
    input of shape [rows, features]."""

    def __init__(self, name: str, found: FoundModel) -> None:
        super().__init__(name)
        self.found = found
        self.model: Any = None
        self._explainer: Any = None

    def load(self) -> bool:
        import joblib

        self.model = joblib.load(self.found.path)
        self.ready = True
        return True

    def _rows(self, rows: Any) -> Any:
        import numpy as np

        try:
            x = np.asarray(rows, dtype=float)
        except ValueError as err:
            raise InvalidInput(str(err)) from err
        if x.ndim != 2:
            raise InvalidInput(f"expected rows of features (2 dimensions), got {x.ndim}")
        return x

    def _predict(self, rows: Any) -> list[Any]:
        from kubeforge_runtimes.explain import as_input

        try:
            return list(self.model.predict(as_input(self.model, self._rows(rows))).tolist())
        except ValueError as err:
            raise InvalidInput(str(err)) from err

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """SHAP attributions of each instance (``kubeforge_runtimes.explain``); 501 with the
        reason for a model that cannot be explained."""
        from kubeforge_runtimes.explain import MAX_INSTANCES, build_explainer, explain_rows

        instances = v1_body(payload).get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('expected "instances": a non-empty list of feature rows')
        if len(instances) > MAX_INSTANCES:
            raise InvalidInput(
                f"{len(instances)} instances: at most {MAX_INSTANCES} are explained per request"
            )
        x = self._rows(instances)
        if self._explainer is None:
            self._explainer = await asyncio.to_thread(
                build_explainer, self.model, self.found.path.parent
            )
        try:
            explained = await asyncio.to_thread(explain_rows, self.model, self._explainer, x)
        except ValueError as err:
            raise InvalidInput(str(err)) from err
        return {"explanations": explained}

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            if not payload.inputs:
                raise InvalidInput("expected one input of shape [rows, features]")
            result = self._predict(payload.inputs[0].as_numpy())
            output = InferOutput("predict", [len(result)], _datatype(result), data=result)
            return _response(payload, self.name, output)
        instances = v1_body(payload).get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('expected "instances": a non-empty list of feature rows')
        return {"predictions": self._predict(instances)}


def _response(request: InferRequest, model_name: str, output: InferOutput) -> InferResponse:
    """A v2 response to ``request`` (its id echoed, as the protocol requires)."""
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),
        model_name=model_name,
        infer_outputs=[output],
    )


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) for v in values):
        return "FP64"
    return "BYTES"


def load_adapters(model: Any, adapters: dict[str, Path]) -> Any:
    """``model`` (a base) with each LoRA adapter loaded under its name. Every serving path names
    the adapter of each request (or none: ``disable_adapter``, ``BASE_ADAPTER``), whichever
    peft made active."""
    from peft import PeftConfig, PeftModel

    wrapped: Any = None
    for name, path in sorted(adapters.items()):
        config = PeftConfig.from_pretrained(str(path))
        kind = str(getattr(config.peft_type, "value", config.peft_type))
        if kind != "LORA":
            raise ModelDirError(
                f"adapter {name!r} ({path}) is a {kind} adapter: only LoRA adapters "
                "are served several on one base"
            )
        if getattr(config, "use_dora", False):
            raise ModelDirError(
                f"adapter {name!r} ({path}) is a DoRA adapter: peft cannot decode DoRA adapters "
                "by request in one batch; serve it alone (spec.model, modelFormat peft) or "
                "merged (spec.output.mergeAdapter)"
            )
        if wrapped is None:
            wrapped = PeftModel.from_pretrained(model, str(path), adapter_name=name)
        else:
            wrapped.load_adapter(str(path), adapter_name=name)
    return wrapped


def build_model(
    name: str, found: FoundModel, max_new_tokens: int = 32, adapters: dict[str, Path] | None = None
) -> Model:
    if found.format == "sklearn":
        if adapters:
            raise ModelDirError("adapters are loaded on a causal LM, not a scikit-learn model")
        return Sklearn(name, found)
    if adapters and found.format != "transformers":
        raise ModelDirError(
            f"adapters are loaded on a base model, but {found.path} is a {found.format} model"
        )
    return CausalLM(name, found, max_new_tokens, adapters)
