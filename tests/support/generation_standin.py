"""A STAND-IN for the generation service, for the web side's tests: it speaks protocol.py on a real Redis but loads
no model. It pops requests, validates them, and answers with canned text ("echo" words), or with an error when the
prompt holds FAIL_MARKER. The real service is worker/generation; this only isolates the web's logic."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

import redis

from app.core.generation import protocol
from app.core.generation.protocol import GenerationRequest, ReplyEnd, ReplyError, ReplyStart, ReplyToken

FAIL_MARKER = "[[standin-fail]]"
SLOW_MARKER = "[[standin-slow]]"  # 0.2 s between tokens, and many of them: for cancel tests
WORDS = ("Hello", " from", " the", " stand-in", " service", ".")


@dataclass
class GenerationStandIn:
    """Serves in a thread until stop(); `requests` keeps what it got, `cancelled` the ids it saw cancelled."""

    redis_url: str
    host: str = field(default_factory=lambda: f"standin-{uuid.uuid4().hex[:8]}")
    requests: list[GenerationRequest] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # requests that did not validate (a web bug)
    keys: protocol.Keys = field(default_factory=protocol.Keys)  # the namespace the web under test uses

    def __post_init__(self) -> None:
        self._redis = redis.Redis.from_url(self.redis_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=self.host, daemon=True)

    def __enter__(self) -> GenerationStandIn:
        self.announce()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def announce(self) -> None:
        """Set (or refresh) the presence key, as a running service does."""
        presence = protocol.ServicePresence(host=self.host, device="cpu")
        self._redis.set(self.keys.presence(self.host), presence.model_dump_json(), ex=protocol.PRESENCE_TTL_S)

    def stop(self) -> None:
        """Stop serving and remove the presence key."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._redis.delete(self.keys.presence(self.host))

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.announce()
            popped = self._redis.blpop([self.keys.requests], timeout=0.2)
            if popped is not None:
                self._answer(popped[1])

    def _answer(self, payload: bytes) -> None:
        try:
            request = GenerationRequest.model_validate_json(payload)
        except ValueError as error:
            self.refused.append(str(error))
            return
        self.requests.append(request)
        text = request.prompt if request.prompt is not None else "\n".join(m.content for m in request.messages or ())
        if FAIL_MARKER in text:
            self._send(request.id, ReplyError(status=400, code="context_length_exceeded",
                                              message="The stand-in refuses prompts with the fail marker."))
            return
        prompt_tokens = len(text.split())
        self._send(request.id, ReplyStart(prompt_tokens=prompt_tokens, rendered_prompt=text,
                                          adapter_sha256=request.adapter.sha256 if request.adapter else None))
        self._generate(request, prompt_tokens, slow=SLOW_MARKER in text)

    def _generate(self, request: GenerationRequest, prompt_tokens: int, slow: bool) -> None:
        words = WORDS * 50 if slow else WORDS
        sent, out, finish = 0, "", "stop"
        for word in words:
            if self._redis.exists(protocol.cancel_key(request.id)):
                self.cancelled.append(request.id)
                finish = "cancelled"
                break
            if sent == request.sampling.max_tokens:
                finish = "length"
                break
            stop_at = _stop_in(out + word, request.sampling.stop)
            if stop_at is not None:
                if stop_at > len(out):
                    self._send(request.id, ReplyToken(text=(out + word)[len(out):stop_at]))
                    sent += 1
                break
            out += word
            sent += 1
            self._send(request.id, ReplyToken(text=word))
            if slow:
                self._stop.wait(0.2)
        self._send(request.id, ReplyEnd(finish_reason=finish, prompt_tokens=prompt_tokens,
                                        completion_tokens=sent, ttft_ms=1.0, tokens_per_s=100.0))

    def _send(self, request_id: str, reply: object) -> None:
        stream = protocol.reply_stream(request_id)
        self._redis.xadd(stream, {protocol.REPLY_FIELD: reply.model_dump_json()})  # type: ignore[attr-defined]
        self._redis.expire(stream, protocol.REPLY_TTL_S)


def _stop_in(text: str, stops: tuple[str, ...]) -> int | None:
    found = [text.find(s) for s in stops if s in text]
    return min(found) if found else None
