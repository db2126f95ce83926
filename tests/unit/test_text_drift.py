"""Drift of text features: the embedding classifier test finds a change of the prompts' topic
mix and keeps quiet on windows resampled from the reference (false alarms at most 1% over fixed
seeds); descriptors say what moved; empty and 1 MB texts are taken, non-text refused; the
report shows the descriptors and example texts, escaped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubeforge_crds.contracts.drift import FeatureConfig, MonitorConfig
from kubeforge_pipelines.tinymodel import support_tickets
from kubeforge_runtimes.drift import text
from kubeforge_runtimes.drift.monitor import Monitor
from kubeforge_runtimes.drift.payloads import PayloadError
from kubeforge_runtimes.drift.reference import summarise
from kubeforge_runtimes.drift.report import monitor_report

THRESHOLD = 0.7


def _texts(n: int, seed: int, products: list[str] | None = None) -> list[str]:
    return [r["text"] for r in support_tickets(n, seed=seed, products=products)]


@pytest.fixture(scope="module")
def reference() -> text.TextReference:
    return text.TextReference.build(_texts(3000, seed=1))


def test_resampled_windows_raise_no_alarm_and_a_topic_change_does(
    reference: text.TextReference,
) -> None:
    null = [text.embedding_drift(reference, _texts(100, seed=s)).auc for s in range(100, 200)]
    assert sum(a > THRESHOLD for a in null) <= 1  # at most 1% of 100 windows
    assert np.mean(null) == pytest.approx(0.5, abs=0.05)
    for seed in range(5):
        shifted = text.embedding_drift(reference, _texts(100, seed, ["vpn", "email"]))
        assert shifted.auc > THRESHOLD
        assert all(("vpn" in t or "email" in t) for t in shifted.live_like)


def test_descriptors_say_what_moved(reference: text.TextReference) -> None:
    refusals = ["I'm sorry, but as an AI I cannot help with THAT 12345!"] * 50
    moved = {d["descriptor"]: d for d in text.descriptor_shifts(reference, refusals)}
    assert moved["refusal"]["window"] == 1.0
    assert moved["refusal"]["reference"] == 0.0
    assert moved["digitShare"]["ks"] > 0.9
    assert moved["oovShare"]["window"] > 0.5  # "sorry", "ai", ... are not ticket words
    ordinary = {d["descriptor"]: d for d in text.descriptor_shifts(reference, _texts(200, 3))}
    assert ordinary["oovShare"]["ks"] < 0.15  # held-out vocabulary: ordinary words are known


def test_empty_and_huge_texts_are_taken_and_other_values_refused() -> None:
    assert text.kept(None, "prompt") == ""
    assert len(text.kept("x" * 1_000_000, "prompt")) == text.MAX_TEXT_CHARS
    with pytest.raises(PayloadError, match="feature 'prompt': 12 is not text") as err:
        text.kept(12, "prompt")
    assert err.value.reason == "bad_value"
    assert text.describe("", frozenset())[:2] == [0.0, 0.0]


def test_a_monitor_with_a_text_feature_scores_and_reports_it() -> None:
    features = [FeatureConfig(name="text", type="text")]
    config = MonitorConfig(
        name="m", reference_uri="file:///r", features=features, window_size=60,
        metrics={"embeddingDrift": THRESHOLD},
    )  # fmt: skip
    frame = pd.DataFrame(support_tickets(800, seed=1))
    monitor = Monitor(config, features, summarise(frame, features))
    odd = "<script>alert('nothing like a ticket')</script>"
    shifted = [*_texts(30, 7), *[odd] * 30]  # half the prompts are nothing like tickets
    monitor.add_request("r1", {"instances": [{"text": t} for t in shifted]})
    evaluation = monitor.evaluate(now=1.0)
    assert evaluation is not None
    (score,) = evaluation.scores
    assert (score.feature, score.metric, score.crossed) == ("text", "embeddingDrift", True)
    page = monitor_report(monitor, "file:///r")
    assert "<h3>text (text)</h3>" in page
    assert "Current texts least like the reference" in page
    assert "&lt;script&gt;alert(" in page  # the strangest text shown, escaped
    assert "<script>" not in page
    with pytest.raises(PayloadError, match="is not text"):
        monitor.add_request("r2", {"instances": [{"text": 3}]})


def _replies(products: list[str]) -> list[str]:
    return [f"Thanks for writing in: we are looking into your {p} problem now." for p in products]


def test_the_models_answers_are_a_feature_of_their_own() -> None:
    """A text feature with source response: the generated answers are compared with the
    reference's answers; the window fills with requests, and the answers are scored once the
    logger sends responses (a logger that sends none leaves them out, not the whole window)."""
    features = [
        FeatureConfig(name="product", type="categorical"),
        FeatureConfig(name="reply", type="text", source="response"),
    ]
    config = MonitorConfig(
        name="m", reference_uri="file:///r", features=features, window_size=60,
        metrics={"embeddingDrift": THRESHOLD, "psi": 0.2},
    )  # fmt: skip
    frame = pd.DataFrame(support_tickets(800, seed=1))
    frame["reply"] = _replies(list(frame["product"]))
    monitor = Monitor(config, features, summarise(frame, features))
    tickets = support_tickets(60, seed=2)
    monitor.add_request("r1", {"instances": [{"product": t["product"]} for t in tickets]})
    first = monitor.evaluate(now=1.0)
    assert first is not None
    assert {s.feature for s in first.scores} == {"product"}  # no answers logged yet
    refusals = ["I'm sorry, but as an AI I cannot help with that request."] * 30
    monitor.add_response("r1", [*_replies([t["product"] for t in tickets[:30]]), *refusals])
    second = monitor.evaluate(now=2.0)
    assert second is not None
    by_feature = {(s.feature, s.metric): s for s in second.scores}
    assert by_feature[("reply", "embeddingDrift")].crossed
    assert not by_feature[("product", "psi")].crossed
    with pytest.raises(PayloadError, match="is not text"):
        monitor.add_response("r2", [3])
