"""The wire of the OpenAI-compatible routes (/v1): request bodies as OpenAI's clients send them, and the objects
and chunks answered (app.api.openai_compat serves them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.openai_errors import OpenAIError
from app.core.generation import protocol as p

Stop = Annotated[str, Field(min_length=1, max_length=p.MAX_STOP_CHARS)]
Text = Annotated[str, Field(max_length=p.MAX_PROMPT_CHARS)]


class Lenient(BaseModel):
    # OpenAI's clients send fields this studio has no use for (user, metadata, …): they are ignored.
    model_config = ConfigDict(extra="ignore")


class TextPart(Lenient):
    type: Literal["text"]
    text: Text


class MessageIn(Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Annotated[list[TextPart], Field(max_length=256)]

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(Lenient):
    include_usage: bool = False


class GenerationIn(Lenient):
    """What chat completions and completions share."""

    model: str = Field(min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=1, le=p.MAX_NEW_TOKENS)
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    stop: Stop | Annotated[list[Stop], Field(max_length=p.MAX_STOP)] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, description="Only 1 is supported.")

    def sampling(self, max_tokens: int | None) -> p.Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        given = {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        return p.Sampling(stop=stop, **{k: v for k, v in given.items() if v is not None})

    def check(self) -> None:
        if self.n not in (None, 1):
            raise OpenAIError(400, "unsupported_value", "Only n=1 is supported: ask again for more choices.", "n")


class ChatCompletionIn(GenerationIn):
    messages: list[MessageIn] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1, le=p.MAX_NEW_TOKENS)


class CompletionIn(GenerationIn):
    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=16)]


@dataclass(frozen=True)
class Shape:
    """How one endpoint words its answer: chat (message / delta) or completion (text)."""

    chat: bool

    def choice(self, text: str | None, finish: str | None, *, chunk: bool) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        body = {} if text is None else {"content": text}
        key = "delta" if chunk else "message"
        return {"index": 0, key: body if chunk else {"role": "assistant", **body}, "logprobs": None,
                "finish_reason": finish}

    def object(self, chunk: bool) -> str:
        return ("chat.completion" + (".chunk" if chunk else "")) if self.chat else "text_completion"


@dataclass
class Answer:
    """One generation's answer being put together: the fields every object or chunk repeats."""

    shape: Shape
    request_id: str
    model: str
    fingerprint: str
    created: int = 0

    def envelope(self, chunk: bool, **fields: Any) -> dict[str, Any]:
        prefix = "chatcmpl-" if self.shape.chat else "cmpl-"
        return {"id": prefix + self.request_id, "object": self.shape.object(chunk), "created": self.created,
                "model": self.model, "system_fingerprint": self.fingerprint, **fields}
