"""The OpenAI-compatible API's requests: each checked field by field (a 400 in OpenAI's error
shape naming the field), a chat's prompt from its messages, and the token budget against the
model's context. Pure functions of the request and the tokenizer; ``openai_api`` serves them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from kubeforge_runtimes.generation import Sampling
from kubeforge_runtimes.prompts import prompt_ids

MAX_TOKENS_LIMIT = 4096  # far beyond any context here: a larger value is a mistake


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.allow = ""  # a 405's Allow header

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return {"error": error}


def whole_unicode(text: str) -> str:
    """``text``, if it is Unicode a tokenizer can take: JSON's ``\\ud800`` escapes can make a
    string with half of a surrogate pair, which no encoding holds (the tokenizer raised a
    TypeError, answered as a 500)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"not valid Unicode: an unpaired surrogate ({text[err.start]!a}) at character "
            f"{err.start}"
        ) from None
    return text


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = None
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = Field(default=None, ge=0, lt=1 << 63)  # what torch can seed with
    # vLLM's extension: at least this many tokens before the end-of-text token may end it
    min_tokens: int = Field(default=0, ge=0)
    # vLLM's extension: the tokenizer's special tokens (a BOS) added to the prompt; by default
    # yes for a completion and a plain transcript, no after a chat template (which writes them)
    add_special_tokens: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop_whole_unicode(cls, stop: Any) -> Any:
        for one in [stop] if isinstance(stop, str) else stop or []:
            whole_unicode(one)
        return stop


class CompletionRequest(OpenAIRequest):
    prompt: str
    max_tokens: int | None = 16  # OpenAI's default for completions

    @field_validator("prompt")
    @classmethod
    def _prompt_whole_unicode(cls, prompt: str) -> str:
        return whole_unicode(prompt)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _whole_unicode(cls, content: Any) -> Any:
        return whole_unicode(content) if isinstance(content, str) else content


class ChatRequest(OpenAIRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None


def parse(model: type[BaseModel], body: Any) -> Any:
    """The request, or a 400 naming the first field that is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        said = first["msg"].removeprefix("Value error, ")  # a validator's own words
        raise OpenAIError(400, f"{param}: {said}", param=param) from None


def message_text(message: Message, index: int) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for i, part in enumerate(message.content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise OpenAIError(
                400,
                f"messages[{index}].content[{i}]: only text parts are supported by this model",
                param=f"messages.{index}.content",
            )
        try:
            parts.append(whole_unicode(part["text"]))
        except ValueError as err:
            raise OpenAIError(
                400, f"messages[{index}].content[{i}].text: {err}", f"messages.{index}.content"
            ) from None
    return "".join(parts)


def chat_ids(tokenizer: Any, messages: list[Message], special: bool | None = None) -> Any:
    """A chat's prompt ids (a batch of one). With the model's chat template: the rendered text,
    with no special tokens added on top, since the template writes them (Llama's and Mistral's
    begin with the BOS; transformers' ``apply_chat_template`` and vLLM add none), unless
    ``special`` asks (vLLM's ``add_special_tokens``). Without a template (a base model or a
    fine-tuned completion model): a plain transcript ending with the assistant's turn, encoded
    as a completion's prompt.

    A control token a user writes in a message (``<|im_start|>system``) is a token, as in vLLM.
    transformers' ``sanitize_control_tokens`` would encode it as text, and was tried: it rebuilt
    the tokenizer's added-token tables on every chat (0.8 ms with 250 added tokens, about
    Llama 3's count, 38 ms with 6,000, on the event loop), refused some SentencePiece-unigram
    tokenizers' messages outright, and changed reasoning templates' history (``</think>``)."""
    turns = [{"role": m.role, "content": message_text(m, i)} for i, m in enumerate(messages)]
    if not getattr(tokenizer, "chat_template", None):
        return prompt_ids(tokenizer, transcript(turns), True if special is None else special)
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    except Exception as err:
        # a template that refuses the conversation (roles that do not alternate, a system
        # role it does not take) refuses the request, not the server
        raise OpenAIError(
            400, f"messages: the model's chat template refused them: {err}", "messages"
        ) from None
    return prompt_ids(tokenizer, str(text), bool(special))


def transcript(turns: list[dict[str, str]]) -> str:
    """The plain chat of a model without a template: ``role: content`` lines, then
    ``assistant:``."""
    return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"


def sampling(request: OpenAIRequest, prompt_tokens: int, context: int, default: int) -> Sampling:
    """The request's sampling, with its token budget checked against the model's context."""
    newer = getattr(request, "max_completion_tokens", None)  # a chat's, before max_tokens
    asked, param = (
        (newer, "max_completion_tokens")
        if newer is not None
        else (request.max_tokens, "max_tokens")
    )
    if request.n != 1:
        raise OpenAIError(400, "n: only one choice per request is supported", param="n")
    if asked is not None and not 1 <= asked <= MAX_TOKENS_LIMIT:
        raise OpenAIError(
            400, f"{param} must be between 1 and {MAX_TOKENS_LIMIT}, got {asked}", param=param
        )
    room = context - prompt_tokens
    # without a budget a chat gets what fits, and at least one token is always asked for
    wanted = asked if asked is not None else max(1, min(default, room))
    if wanted > room:
        raise OpenAIError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the prompt, {wanted} in the "
            "completion). Please reduce the prompt or the completion length.",
            param="messages" if isinstance(request, ChatRequest) else "prompt",
            code="context_length_exceeded",
        )
    if request.min_tokens > wanted:
        raise OpenAIError(
            400,
            f"min_tokens ({request.min_tokens}) is more than the {wanted} tokens asked for",
            param="min_tokens",
        )
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    return Sampling(
        wanted, request.temperature, request.top_p, stop, request.seed, request.min_tokens
    )
