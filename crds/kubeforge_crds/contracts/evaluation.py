"""A ModelServer's evaluation before traffic: the prompt set's format, which the operator checks
before it starts the evaluation Job and the Job reads, and the report the Job leaves as its
termination message, which the operator judges (``kubeforge_runtimes.evaluate`` runs it)."""

from __future__ import annotations

import json
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_PROMPTS: Final = 200
MAX_PROMPT_CHARS: Final = 8000
PROMPTS_MOUNT: Final = "/etc/kubeforge/evaluation"  # where the Job mounts the ConfigMap


class PromptSetError(ValueError):
    """The prompt set cannot be used; the message names the line and what is wrong."""


class PromptCase(BaseModel):
    """One line of the prompt set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    reference: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


def parse_prompts(text: str) -> list[PromptCase]:
    """The prompt set's JSON Lines (blank lines skipped), or the first problem by line."""
    cases: list[PromptCase] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptSetError(f"line {number}: not JSON ({err.msg})") from err
        try:
            cases.append(PromptCase.model_validate(raw))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the line"
            raise PromptSetError(
                f'line {number}: {where}: {first["msg"]} (each line is {{"prompt": "...", '
                '"reference": "..."})'
            ) from err
        if len(cases) > MAX_PROMPTS:
            raise PromptSetError(f"more than {MAX_PROMPTS} prompts")
    if not cases:
        raise PromptSetError('no prompts (each line is {"prompt": "...", "reference": "..."})')
    return cases


class VersionScore(BaseModel):
    """One version's answers, scored."""

    model_config = ConfigDict(extra="forbid")

    score: float = Field(ge=0.0, le=1.0)
    answered: int = Field(ge=0)


class EvaluationReport(BaseModel):
    """What the evaluation Job leaves as its termination message (JSON, well under 4 KiB)."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    prompts: int = Field(ge=0)
    candidate: VersionScore
    stable: VersionScore
    # a few of the candidate's worst answers, for the person reading the Event
    worst: list[dict[str, str | float]] = Field(default_factory=list, max_length=3)
