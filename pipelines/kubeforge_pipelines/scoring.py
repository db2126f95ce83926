"""A prompt set answered and scored: the FineTuneJob's evaluation (the tuned model and its base,
in the evaluate step) and a ModelServer's evaluation before traffic (two served versions,
``kubeforge_runtimes.evaluate``) score answers the same way, so their numbers compare.

ROUGE-L F-measure of each answer against the prompt's reference, with Google's ``rouge-score``
(the implementation the summarisation literature reports), averaged over the set."""

from __future__ import annotations

from typing import Any


def rouge_l(answers: list[str], references: list[str]) -> list[float]:
    """The ROUGE-L F-measure of each answer against its reference."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return [
        scorer.score(ref, ans)["rougeL"].fmeasure
        for ans, ref in zip(answers, references, strict=True)
    ]


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 6) if values else 0.0


def greedy_answers(model: Any, tokenizer: Any, prompts: list[str], max_tokens: int) -> list[str]:
    """Each prompt's greedy continuation of at most ``max_tokens`` tokens (what a served model
    answers at temperature 0), without the prompt. A prompt longer than the model's context
    leaves keeps its end (where the question is), as much as fits with the answer."""
    import torch

    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0)
    room = max(1, int(context or 1 << 20) - max_tokens)
    model.eval()
    answers = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")
            ids = {k: v[:, -room:] for k, v in ids.items()}
            out = model.generate(
                **ids,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
            answers.append(
                tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
            )
    return answers
