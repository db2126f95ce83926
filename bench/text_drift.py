#!/usr/bin/env python3
"""Text-drift evaluation time for a window of 1,000 prompts: kubeforge's text drift against
Evidently's text descriptors and embedding drift, in the same process on the same data.

Both sides do the same work per window: embed the window's prompts (WordLlama, the model
kubeforge ships with; Evidently computes no embeddings itself and is given the same ones),
test the embeddings for drift with a domain classifier (kubeforge: cross-validated logistic
regression; Evidently: ``EmbeddingsDrift``, its model-based method by default), and compare
per-prompt descriptors with the reference's (kubeforge: length, words, mean word length,
out-of-vocabulary, non-letter, digit and upper-case shares, refusals, each by KS; Evidently:
``TextLength``, ``WordCount``, ``SentenceCount``, ``NonLetterCharacterPercentage``, each by its
drift preset's default test). Evidently's ``OOVWordsPercentage`` is left out: it needs NLTK
corpora downloaded at run time, which this machine cannot do (kubeforge's out-of-vocabulary
share is against the reference's own words).

The reference (3,000 prompts; the classifier's sample of 1,000 and its embeddings) is prepared
once for both, as a running monitor does; "cold" adds that preparation. Two windows: one
resampled from the reference's distribution (neither should say drift) and one whose topic mix
moved (both should). Needs the ``bench`` extra (``make bench-drift``).

    python bench/text_drift.py --json /tmp/text-drift.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubeforge_pipelines.tinymodel import support_tickets
from kubeforge_runtimes.drift import text
from kubeforge_runtimes.drift.report import TEXT_KS_NOTABLE

THRESHOLD = 0.7  # kubeforge's embeddingDrift threshold in the examples (ROC AUC)
DESCRIPTOR_KS = TEXT_KS_NOTABLE  # what the report marks as moved


def prompts(n: int, seed: int, products: list[str] | None = None) -> list[str]:
    return [r["text"] for r in support_tickets(n, seed=seed, products=products)]


def time_kubeforge(reference: list[str], window: list[str], repeats: int) -> dict[str, Any]:
    t = time.perf_counter()
    ref = text.TextReference.build(reference)
    prepared = time.perf_counter() - t
    times, auc, moved = [], 0.0, []
    for _ in range(repeats + 1):  # the first run warms scikit-learn up: not counted
        t = time.perf_counter()
        auc = text.embedding_drift(ref, window).auc
        shifts = text.descriptor_shifts(ref, window)
        times.append(time.perf_counter() - t)
        moved = [d["descriptor"] for d in shifts if d["ks"] > DESCRIPTOR_KS]
    return _timed(times, prepared, auc, auc > THRESHOLD, moved) | {"reference": ref}


def _timed(
    times: list[float], prepared: float, score: float, drift: bool, moved: list[str]
) -> dict[str, Any]:
    """One side's figures: the first run (a warm-up) left out of the median."""
    steady = statistics.median(times[1:])
    return {
        "steady_s": steady,
        "cold_s": steady + prepared,
        "all_s": times[1:],
        "score": score,
        "drift": drift,
        "descriptors_moved": moved,
    }


def _evidently_dataset(frame: pd.DataFrame, embedding_columns: list[str]) -> Any:
    from evidently import DataDefinition, Dataset
    from evidently.descriptors import (
        NonLetterCharacterPercentage,
        SentenceCount,
        TextLength,
        WordCount,
    )

    return Dataset.from_pandas(
        frame,
        data_definition=DataDefinition(
            text_columns=["prompt"],
            numerical_columns=embedding_columns,
            embeddings={"prompt": embedding_columns},
        ),
        descriptors=[
            TextLength("prompt", alias="length"),
            WordCount("prompt", alias="words"),
            SentenceCount("prompt", alias="sentences"),
            NonLetterCharacterPercentage("prompt", alias="nonLetter"),
        ],
    )


def _frame(texts: list[str], embeddings: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    columns = [f"e{i}" for i in range(embeddings.shape[1])]
    frame = pd.DataFrame(embeddings, columns=columns)
    frame.insert(0, "prompt", texts)
    return frame, columns


def time_evidently(sample: list[str], window: list[str], repeats: int) -> dict[str, Any]:
    from evidently import Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    descriptors = ["length", "words", "sentences", "nonLetter"]
    t = time.perf_counter()
    ref_frame, columns = _frame(sample, text.embed(sample))
    reference = _evidently_dataset(ref_frame, columns)
    prepared = time.perf_counter() - t
    times, score, moved = [], 0.0, []
    for _ in range(repeats + 1):  # the first run warms it up: not counted
        t = time.perf_counter()
        current = _evidently_dataset(_frame(window, text.embed(window))[0], columns)
        report = Report(
            [EmbeddingsDrift(embeddings_name="prompt")]
            + [ValueDrift(column=d) for d in descriptors]
        )
        result = report.run(current, reference).dict()
        times.append(time.perf_counter() - t)
        moved = []
        for metric in result["metrics"]:
            config = metric["config"]
            if config.get("type", "").endswith("EmbeddingsDrift"):
                score = float(metric["value"])
            elif config.get("type", "").endswith("ValueDrift"):
                value, threshold = float(metric["value"]), float(config["threshold"])
                # a p-value drifts below its threshold, a distance above it
                p_value = "p_value" in str(config.get("method"))
                if (value < threshold) if p_value else (value > threshold):
                    moved.append(config["column"])
    # its model-based method's default: drift when the ROC AUC is over 0.55
    return _timed(times, prepared, score, score > 0.55, moved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=int, default=3000, help="reference prompts")
    parser.add_argument("--window", type=int, default=1000, help="prompts in the window")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    reference = prompts(args.reference, seed=1)
    windows = {
        "resampled": prompts(args.window, seed=2),
        "topic moved": prompts(args.window, seed=3, products=["vpn", "email"]),
    }
    text.embed(["warm up"])  # the model's load is start-up, not evaluation, on both sides
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "reference_prompts": args.reference,
        "window_prompts": args.window,
        "windows": {},
    }
    print(f"machine: {result['machine']}")
    for label, window in windows.items():
        kf = time_kubeforge(reference, window, args.repeats)
        ev = time_evidently(kf.pop("reference").sample, window, args.repeats)
        row = {
            "kubeforge": kf,
            "evidently": ev,
            "ratio": ev["steady_s"] / kf["steady_s"],
            "ratio_cold": ev["cold_s"] / kf["cold_s"],
        }
        result["windows"][label] = row
        print(f"{label}: {args.window} prompts against {args.reference}")
        for side, got in (("kubeforge", kf), ("evidently", ev)):
            print(
                f"  {side:9}  {got['steady_s'] * 1e3:8.1f} ms (cold {got['cold_s']:.2f} s)  "
                f"score {got['score']:.3f}  drift {got['drift']}  "
                f"descriptors moved {got['descriptors_moved']}"
            )
        print(f"  ratio evidently/kubeforge: {row['ratio']:.2f}x (cold {row['ratio_cold']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
