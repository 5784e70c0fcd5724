"""The generation service's wire protocol on Redis: a request list, one reply stream per request, a cancel key,
and the services' presence.

The web pushes a GenerationRequest (JSON) onto Keys.requests; a generation service (worker/generation/service.py)
pops it, and appends Reply events to reply_stream(id) as tokens are produced: `start`, `token`..., then exactly one
of `end` or `error`; each stream entry has one field, REPLY_FIELD, holding a Reply's JSON. A Redis stream (not
pub/sub) so a reader that subscribes late loses nothing; it expires REPLY_TTL_S after its last event. A caller
that goes away sets cancel_key(id); the service stops that sequence at its next step. Each running service
refreshes Keys.presence(host) every few seconds (it expires after PRESENCE_TTL_S), so the web can answer 503 at
once when none runs instead of waiting for a reply.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

REPLY_FIELD = "e"
REPLY_TTL_S = 600
PRESENCE_TTL_S = 15
MAX_NEW_TOKENS = 4096  # a bound on max_tokens whatever the model's context
MAX_STOP = 4  # as OpenAI: up to 4 stop sequences
MAX_STOP_CHARS = 200
MAX_PROMPT_CHARS = 200_000  # checked before tokenizing; the context length is checked after, by the service
DEFAULT_NAMESPACE = "lorastudio:gen"


@dataclass(frozen=True)
class Keys:
    """The request list and presence keys of one studio's generation services: studios (or test sessions) that
    share a Redis keep apart by namespace (LORASTUDIO_GENERATION_NAMESPACE)."""

    namespace: str = DEFAULT_NAMESPACE

    @property
    def requests(self) -> str:
        """The list GenerationRequests are pushed onto and popped from."""
        return f"{self.namespace}:requests"

    @property
    def presence_pattern(self) -> str:
        """A SCAN pattern matching every running service's presence key."""
        return f"{self.namespace}:service:*"

    def presence(self, host: str) -> str:
        """A running service's presence (JSON of ServicePresence), expiring PRESENCE_TTL_S after its last refresh."""
        return f"{self.namespace}:service:{host}"


REQUESTS = Keys().requests
PRESENCE_PATTERN = Keys().presence_pattern


def presence_key(host: str) -> str:
    """presence_key in the default namespace."""
    return Keys().presence(host)


def reply_stream(request_id: str) -> str:
    """The Redis stream a request's reply events go to."""
    return f"lorastudio:gen:reply:{request_id}"


def cancel_key(request_id: str) -> str:
    """Set (any value) when the caller has gone: the service stops generating for it."""
    return f"lorastudio:gen:cancel:{request_id}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseRef(Strict):
    """The base model to load, as registered (BaseModelEntry): the service loads it the way training did."""

    name: str
    source: Literal["hub", "local"]
    ref: str
    gguf_file: str | None = None
    trust_remote_code: bool = False


class AdapterRef(Strict):
    """A run's adapter: the service exports its artifacts from the database (kind `adapter`, or one checkpoint's
    files when step is set) into a cache keyed by sha256, the hash of those files' blob hashes in name order."""

    run_id: int  # 0: a registry version whose run is gone (its files are the version's own)
    step: int | None = None  # None: the final adapter
    version_id: int | None = None  # a registry version (name:vN, name:alias): its own files, adapter_version_files
    sha256: str  # identifies the exact adapter files; recorded with every generation ("proof it was applied")


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


class Sampling(Strict):
    """Per-request sampling; temperature 0 is greedy."""

    max_tokens: int = Field(256, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    stop: tuple[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)], ...] = Field((), max_length=MAX_STOP)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


class GenerationRequest(Strict):
    """One generation: a chat (messages, rendered with the base's chat template) or a raw prompt."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    base: BaseRef
    adapter: AdapterRef | None = None  # None: the base model alone
    messages: tuple[ChatMessage, ...] | None = Field(None, min_length=1, max_length=256)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    sampling: Sampling = Sampling()
    owner_id: int | None = None  # for the service's logs only; the web has checked access

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either messages (a chat) or prompt (a completion), not both or neither")
        return self


class ReplyStart(Strict):
    type: Literal["start"] = "start"
    prompt_tokens: int
    rendered_prompt: str  # the prompt as the chat template rendered it (the playground shows it)
    adapter_sha256: str | None  # the adapter actually applied; None for the base


class ReplyToken(Strict):
    type: Literal["token"] = "token"
    text: str  # the new text since the previous token event (decoded incrementally, whole characters only)


class ReplyEnd(Strict):
    type: Literal["end"] = "end"
    finish_reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float  # from the request's arrival at the service to its first token
    tokens_per_s: float


class ReplyError(Strict):
    """A request the service could not serve: status is the HTTP status the web should answer with (400: the
    request's fault, e.g. a prompt past the context length; 404: adapter files gone; 500: the service's fault)."""

    type: Literal["error"] = "error"
    status: int
    code: str
    message: str


Reply = Annotated[ReplyStart | ReplyToken | ReplyEnd | ReplyError, Field(discriminator="type")]


class ServicePresence(Strict):
    host: str
    device: str  # "cpu", "cuda:0", ...
    backend: Literal["transformers", "vllm"] = "transformers"
    loaded_bases: tuple[str, ...] = ()
