"""Drift of text features (prompts): is the live traffic's text like the training data's?

- **Embedding drift** (the verdict, metric ``embeddingDrift``): each text becomes a sentence
  embedding with WordLlama, whose small model (256 dimensions) ships inside its PyPI wheel, so
  nothing is downloaded at run time. A classifier (logistic regression) then tries to tell the
  window's texts from a sample of the reference's; its cross-validated ROC AUC is the score:
  0.5 when it cannot (the same kind of text), towards 1 when the topics, language or form
  moved. A domain-classifier test has no distribution to assume and says how separable the two
  are in a number people can read.
- **Descriptors** (what moved, for the report): per text its length, words, mean word length,
  out-of-vocabulary share (words the reference lacks), non-letter and digit shares, upper-case
  share and whether it reads as a refusal; each compared with the reference's by the KS
  statistic.

Texts are kept and scored on their first ``MAX_TEXT_CHARS`` characters (a 1 MB prompt costs the
window no more than that; its length descriptor says so)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kubeforge_runtimes.drift import stats

MAX_TEXT_CHARS = 4000
REFERENCE_SAMPLE = 1000  # reference texts the classifier compares with
EXAMPLES = 3
SEED = 0
DESCRIPTORS = (
    "length",
    "words",
    "meanWordLength",
    "oovShare",
    "nonLetterShare",
    "digitShare",
    "upperShare",
    "refusal",
)
WORD = re.compile(r"[^\W\d_]+")
REFUSAL = re.compile(
    r"\b(i\s*(?:am|'m)\s*(?:sorry|unable|not able)|i\s*(?:can(?:no|')t|won't|will not)\b|"
    r"as an ai\b|cannot (?:help|assist) with)",
    re.IGNORECASE,
)


def kept(value: Any, feature: str) -> str:
    """A text feature's value as the window keeps it; anything but a string is refused."""
    from kubeforge_runtimes.drift.payloads import PayloadError

    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError("bad_value", f"feature {feature!r}: {value!r} is not text")
    return value[:MAX_TEXT_CHARS]


def describe(text: str, vocabulary: frozenset[str]) -> list[float]:
    """The descriptors of one text, in ``DESCRIPTORS`` order."""
    words = WORD.findall(text.lower())
    chars = len(text) or 1
    letters = sum(c.isalpha() for c in text)
    return [
        float(len(text)),
        float(len(words)),
        float(np.mean([len(w) for w in words])) if words else 0.0,
        sum(w not in vocabulary for w in words) / len(words) if words else 0.0,
        (len(text) - letters - text.count(" ")) / chars,
        sum(c.isdigit() for c in text) / chars,
        sum(c.isupper() for c in text) / max(letters, 1),
        1.0 if REFUSAL.search(text) else 0.0,
    ]


@cache
def embedder() -> Any:
    """WordLlama's model from its own wheel. Its lookup of the tokenizer in the package checks
    ``tokenizer/`` while the wheel has ``tokenizers/``; as a cache directory the package itself
    has both files where the lookup expects them, and downloads stay off."""
    import wordllama

    return wordllama.WordLlama.load(
        cache_dir=Path(wordllama.__file__).parent, disable_download=True
    )


def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    return np.asarray(embedder().embed(list(texts)), dtype=np.float32)


@dataclass(frozen=True)
class TextReference:
    """A text feature's reference: a sample (and its embeddings) for the classifier, the
    vocabulary, and the descriptors' distributions."""

    sample: list[str]
    embeddings: npt.NDArray[np.float32]
    vocabulary: frozenset[str]
    descriptors: dict[str, stats.NumericReference]

    @classmethod
    def build(cls, texts: Sequence[Any]) -> TextReference:
        values = [kept(t, "reference") for t in texts if t is not None]
        if not values:
            raise ValueError("the reference has no texts")
        order = np.random.default_rng(SEED).permutation(len(values))
        shuffled = [values[i] for i in order]
        # the vocabulary from one half, the descriptors from the other: in-sample, every
        # reference word would be known and any new word in the traffic would look like drift
        half = max(1, len(shuffled) // 2)
        vocabulary = frozenset(w for t in shuffled[:half] for w in WORD.findall(t.lower()))
        held_out = shuffled[half:] or shuffled
        described = np.array([describe(t, vocabulary) for t in held_out])
        sample = shuffled[:REFERENCE_SAMPLE]
        return cls(
            sample=sample,
            embeddings=embed(sample),
            vocabulary=vocabulary,
            descriptors={
                d: stats.NumericReference.build(described[:, i]) for i, d in enumerate(DESCRIPTORS)
            },
        )


@dataclass(frozen=True)
class TextDrift:
    auc: float
    live_like: list[str]  # the window's texts least like the reference
    reference_like: list[str]  # the reference's texts least like the window


def embedding_drift(reference: TextReference, texts: Sequence[str]) -> TextDrift:
    """The domain classifier's cross-validated ROC AUC: reference sample (0) against the
    window's newest texts (1, at most ``REFERENCE_SAMPLE``), on their embeddings; NaN with
    fewer than 10 texts on a side."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    live = list(texts)
    if len(live) > REFERENCE_SAMPLE:  # the newest, as many as the reference side: bounded cost
        live = live[-REFERENCE_SAMPLE:]
    n_ref, n_live = len(reference.sample), len(live)
    if min(n_ref, n_live) < 10:
        return TextDrift(float("nan"), [], [])
    x = np.vstack([reference.embeddings, embed(live)])
    y = np.r_[np.zeros(n_ref), np.ones(n_live)]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    classifier = LogisticRegression(max_iter=1000, class_weight="balanced")
    p = cross_val_predict(classifier, x, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, p))
    live_first = np.argsort(-p[n_ref:], kind="stable")[:EXAMPLES]
    ref_first = np.argsort(p[:n_ref], kind="stable")[:EXAMPLES]
    return TextDrift(
        auc,
        [live[i][:300] for i in live_first],
        [reference.sample[i][:300] for i in ref_first],
    )


def descriptor_shifts(reference: TextReference, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Each descriptor's mean in the reference and in the window, and its KS statistic, the
    largest shift first."""
    if not texts:
        return []
    described = np.array([describe(t, reference.vocabulary) for t in texts])
    out = []
    for i, name in enumerate(DESCRIPTORS):
        ref = reference.descriptors[name]
        got = stats.numeric_scores(ref, described[:, i], ["ks"])
        out.append(
            {
                "descriptor": name,
                "reference": ref.mean,
                "window": float(described[:, i].mean()),
                "ks": got["ks"],
            }
        )
    return sorted(out, key=lambda d: -d["ks"])
