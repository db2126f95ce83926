"""Per-prediction explanations for the built-in runtime's scikit-learn models (KServe's
``:explain`` verb, ``POST /v1/models/<name>:explain`` with the body of a predict request).

SHAP values (the ``shap`` library) say how much each input moved one prediction away from the
model's average output: tree ensembles are explained exactly without any data
(``TreeExplainer``); any other estimator needs a sample of its training rows saved as
``background.npy`` beside ``model.joblib`` (SHAP's model-agnostic explainer masks features with
it). A model that cannot be explained is answered 501 with the reason and what would fix it
(kserve maps ``NotImplementedError`` to 501).

Each explanation carries the prediction, the base value, every feature's input and contribution
(largest first), and a sentence a non-specialist can read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKGROUND_FILE = "background.npy"
MAX_BACKGROUND_ROWS = 200  # the model-agnostic explainer's cost grows with the sample
MAX_INSTANCES = 100  # per :explain request
TOP_IN_WORDS = 3


class NotExplainableError(NotImplementedError):
    """The model cannot be explained; kserve answers 501 with this message."""


@dataclass(frozen=True)
class Target:
    """What one row's contributions are contributions to."""

    index: int | None  # the output column (a class), or None for a single output
    words: str  # "the probability of class 1", "the predicted value"


def build_explainer(model: Any, model_dir: Path) -> Callable[[np.ndarray], Any]:
    """A SHAP explainer for ``model``: exact for tree ensembles, model-agnostic with the
    background sample otherwise; raises :class:`NotExplainableError` saying why not."""
    import shap

    try:
        return shap.TreeExplainer(model)  # type: ignore[no-any-return]
    except Exception as err:  # shap says "Model type not yet supported" in its own classes
        tree_error = str(err).splitlines()[0][:200]
    background = model_dir / BACKGROUND_FILE
    if not background.exists():
        raise NotExplainableError(
            f"{type(model).__name__} cannot be explained: it is not a tree ensemble "
            f"({tree_error}), and there is no {BACKGROUND_FILE} beside model.joblib; save a "
            "sample of its training rows there (numpy.save, 50 to 500 rows) to explain it"
        )
    data = np.load(background, allow_pickle=False)[:MAX_BACKGROUND_ROWS]
    if hasattr(model, "classes_") and not hasattr(model, "predict_proba"):
        raise NotExplainableError(
            f"{type(model).__name__} cannot be explained: a classifier without predict_proba "
            "gives classes, not scores to attribute (for an SVC: fit it with probability=True)"
        )
    output = getattr(model, "predict_proba", None) or model.predict

    def predict(rows: np.ndarray) -> Any:
        return output(as_input(model, rows))

    masker = shap.maskers.Independent(data, max_samples=len(data))
    return shap.Explainer(predict, masker)  # type: ignore[no-any-return]


def feature_names(model: Any, width: int) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) == width:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(width)]


def target_of(model: Any, prediction: Any, values_ndim: int) -> Target:
    classes = getattr(model, "classes_", None)
    if classes is None:
        return Target(None, "the predicted value")
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    if values_ndim == 3:  # one column per class: explain the class predicted
        return Target(labels.index(prediction), f"the probability of class {prediction}")
    # one output for a binary classifier (gradient boosting): the log-odds of the second class
    return Target(None, f"the log-odds of class {labels[-1]}")


def as_input(model: Any, x: np.ndarray) -> Any:
    """Rows as the model was fitted: a DataFrame with its feature names, when it has them."""
    names = getattr(model, "feature_names_in_", None)
    if names is None or len(names) != x.shape[1]:
        return x
    import pandas as pd

    return pd.DataFrame(x, columns=list(names))


def explain_rows(
    model: Any, explainer: Callable[[Any], Any], x: np.ndarray
) -> list[dict[str, Any]]:
    """The explanation of each row of ``x``."""
    rows = as_input(model, x)
    predictions = model.predict(rows).tolist()
    shap_values = explainer(x)
    values = np.asarray(shap_values.values)
    base = np.asarray(shap_values.base_values)
    names = feature_names(model, x.shape[1])
    out = []
    for r, prediction in enumerate(predictions):
        target = target_of(model, prediction, values.ndim)
        row = values[r] if target.index is None else values[r, :, target.index]
        row_base = np.ravel(base[r] if base.ndim else base)
        base_value = row_base[target.index] if target.index is not None else row_base[0]
        contributions: list[dict[str, Any]] = sorted(
            (
                {"feature": n, "input": float(v), "contribution": float(c)}
                for n, v, c in zip(names, x[r], np.ravel(row), strict=True)
            ),
            key=lambda a: -abs(float(a["contribution"])),
        )
        out.append(
            {
                "prediction": prediction,
                "explained": target.words,
                "baseValue": float(base_value),
                "attributions": contributions,
                "summary": in_words(prediction, target, contributions),
            }
        )
    return out


def in_words(prediction: Any, target: Target, contributions: list[dict[str, Any]]) -> str:
    """ "Predicted 1. Most of it: age = 63 raised the probability of class 1 by 0.31; ..." """
    moved = [a for a in contributions[:TOP_IN_WORDS] if a["contribution"] != 0]
    if not moved:
        return f"Predicted {prediction}. No input moved it away from the model's average."
    parts = [
        f"{a['feature']} = {a['input']:g} {'raised' if a['contribution'] > 0 else 'lowered'} "
        f"{target.words} by {abs(a['contribution']):.3g}"
        for a in moved
    ]
    return f"Predicted {prediction}. Most of it: " + "; ".join(parts) + "."


EFFECT = {True: "made it likelier", False: "made it less likely"}
MAX_PROMPT_TOKENS = 256  # a token ablation costs one forward pass per prompt token


def explain_text(model: Any, tokenizer: Any, prompt: str, answer: str) -> dict[str, Any]:
    """Which words of ``prompt`` made the model answer ``answer`` (its own greedy answer):
    captum's ``LLMAttribution`` with feature ablation, each prompt token left out in turn and
    the change in the answer's log-probability measured. A positive contribution: without that
    token the answer becomes less likely."""
    from captum.attr import FeatureAblation, LLMAttribution, TextTokenInput

    n_tokens = len(tokenizer(prompt)["input_ids"])
    if n_tokens > MAX_PROMPT_TOKENS:
        raise ValueError(
            f"the prompt has {n_tokens} tokens: at most {MAX_PROMPT_TOKENS} are explained"
        )
    if not answer.strip():
        raise ValueError("the model's answer to this prompt is empty: nothing to explain")
    attribution = LLMAttribution(FeatureAblation(model), tokenizer)
    result = attribution.attribute(TextTokenInput(prompt, tokenizer), target=answer)
    values = [float(v) for v in result.seq_attr.detach().cpu().tolist()]
    tokens = [tokenizer.convert_tokens_to_string([t]) for t in result.input_tokens]
    contributions = [{"token": t, "contribution": v} for t, v in zip(tokens, values, strict=True)]
    return {
        "prompt": prompt,
        "answer": answer,
        "explained": "the log-probability of the answer",
        "attributions": contributions,
        "summary": text_in_words(contributions),
    }


def text_in_words(contributions: list[dict[str, Any]]) -> str:
    ranked = sorted(
        (c for c in contributions if c["token"].strip()), key=lambda c: -abs(c["contribution"])
    )[:TOP_IN_WORDS]
    if not ranked:
        return "No word of the prompt moved the answer."
    parts = [
        f"{c['token'].strip()!r} ({EFFECT[c['contribution'] > 0]}, {c['contribution']:+.3g})"
        for c in ranked
    ]
    return "The words that shaped the answer most: " + "; ".join(parts) + "."
