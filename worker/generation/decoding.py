"""One decoding loop for a batch of sequences: a left-padded prefill, then one token per live row per step with the
KV cache; per-row sampling, stop strings, max_tokens and cancellation; each row's text streamed as it comes.

Finished rows are dropped from the batch (and from the cache) at the step they finish, so the others go on alone.
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from app.core.generation.protocol import GenerationRequest, ReplyEnd, ReplyError, ReplyStart, ReplyToken
from worker.generation.replies import Replies
from worker.generation.text import Detokenizer, StopText

BASE = "__base__"  # PEFT's adapter name for "no adapter" in a mixed batch


@dataclass
class Sequence:
    """One request being generated."""

    request: GenerationRequest
    prompt_ids: list[int]
    rendered_prompt: str
    adapter: str = BASE  # the PEFT adapter name applied to this row
    adapter_sha256: str | None = None
    arrived: float = field(default_factory=time.monotonic)
    generated: int = 0
    first_token_at: float | None = None
    finish: str | None = None
    detokenizer: Detokenizer | None = None
    text: StopText | None = None
    generator: torch.Generator | None = None

    @property
    def id(self) -> str:
        return self.request.id

    def start(self, tokenizer: Any, device: str) -> ReplyStart:
        """Set up its text and random state; the start event."""
        self.detokenizer = Detokenizer(tokenizer, self.prompt_ids)
        self.text = StopText(self.request.sampling.stop)
        seed = self.request.sampling.seed
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(secrets.randbits(63) if seed is None else seed)
        return ReplyStart(prompt_tokens=len(self.prompt_ids), rendered_prompt=self.rendered_prompt,
                          adapter_sha256=self.adapter_sha256)

    def accept(self, token: int, stop_ids: set[int]) -> str:
        """Take one sampled token; returns the text to send (the sequence may have finished: see finish)."""
        self.generated += 1
        self.first_token_at = self.first_token_at or time.monotonic()
        if token in stop_ids:
            self.finish = "stop"
            return self.text.feed(self.detokenizer.flush()) + self.text.flush()
        out = self.text.feed(self.detokenizer.add(token))
        if self.text.stopped:
            self.finish = "stop"
        elif self.generated >= self.request.sampling.max_tokens:
            out += self.text.feed(self.detokenizer.flush())
            self.finish = "stop" if self.text.stopped else "length"
            out += self.text.flush()
        return out

    def end(self, reason: str) -> ReplyEnd:
        """The end event (reason: stop, length or cancelled)."""
        now = time.monotonic()
        first = self.first_token_at or now
        decode_s = now - first
        rate = (self.generated - 1) / decode_s if self.generated > 1 and decode_s > 0 else 0.0
        return ReplyEnd(finish_reason=reason, prompt_tokens=len(self.prompt_ids), completion_tokens=self.generated,
                        ttft_ms=(first - self.arrived) * 1000.0, tokens_per_s=rate)


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """One token from a row of logits: argmax at temperature 0, else temperature then nucleus (top_p) sampling."""
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p  # the top token always stays
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        pick = torch.multinomial(sorted_probs, 1, generator=generator)
        return int(order[pick])
    return int(torch.multinomial(probs, 1, generator=generator))


def _prefill_inputs(seqs: list[Sequence], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), left-padded to the longest prompt."""
    width = max(len(s.prompt_ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq.prompt_ids):] = torch.tensor(seq.prompt_ids, dtype=torch.long)
        mask[row, width - len(seq.prompt_ids):] = 1
    return ids.to(device), mask.to(device)


def _cache_of(out: Any) -> Any:
    """The KV cache a forward returned (`cache` in transformers 5.x, `past_key_values` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@dataclass
class Decoder:
    """Runs batches on one model: `mixed` when it is a PeftModel (each row names its adapter, or BASE)."""

    model: Any
    tokenizer: Any
    device: str
    stop_ids: set[int]
    mixed: bool = False
    steps: int = 0  # forward passes so far (prefills included), for tests and logs

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any,
                adapters: list[str] | None) -> Any:
        """One forward; adapters names each row's adapter (PEFT's mixed batch), None when the batch's rows all
        share one (set beforehand by _one_adapter: PEFT's mixed path loops in Python per layer and per step)."""
        extra: dict[str, Any] = {"adapter_names": adapters} if self.mixed and adapters is not None else {}
        if cache is not None:
            extra[self.cache_argument] = cache
        if self.takes("logits_to_keep"):
            extra["logits_to_keep"] = 1  # the head for the last position only
        self.steps += 1
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)

    def takes(self, argument: str) -> bool:
        """Whether the model's own forward names this argument."""
        return argument in self.arguments

    @cached_property
    def arguments(self) -> frozenset[str]:
        model = self.model.get_base_model() if self.mixed else self.model
        return frozenset(inspect.signature(model.forward).parameters)

    @property
    def cache_argument(self) -> str:
        """How the model's forward takes the KV cache: `cache` (transformers 5.x) or `past_key_values` (earlier,
        and remote code written for it)."""
        return "cache" if self.takes("cache") else "past_key_values"

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], replies: Replies, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Generate every sequence to its end, sending start, token and end (or error) events to replies."""
        for seq in seqs:
            replies.send(seq.id, seq.start(self.tokenizer, self.device))
        replies.flush()  # before the prefill, which takes a while on a long prompt
        names = {s.adapter for s in seqs}
        # Rows only ever leave a batch: one that starts on a single adapter (or the base) stays on it.
        with self._one_adapter(names) if len(names) == 1 else contextlib.nullcontext():
            self._decode(seqs, replies, should_stop, mixed_rows=len(names) > 1)
        replies.flush()

    def _one_adapter(self, names: set[str]) -> contextlib.AbstractContextManager:
        """The model with the batch's one adapter active (or every adapter off for the base)."""
        if not self.mixed:
            return contextlib.nullcontext()
        (name,) = names
        if name == BASE:
            return self.model.disable_adapter()
        self.model.set_adapter(name)
        return contextlib.nullcontext()

    def _decode(self, seqs: list[Sequence], replies: Replies, should_stop: Callable[[], bool],
                mixed_rows: bool) -> None:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = _prefill_inputs(seqs, pad_id, self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.forward(ids, mask, positions, None, [s.adapter for s in seqs] if mixed_rows else None)
        live, cache = list(seqs), _cache_of(out)
        positions = positions[:, -1:]
        while live:
            logits = out.logits[:, -1, :].float()
            greedy = logits.argmax(dim=-1).tolist()  # one argmax for the batch: most requests are greedy
            tokens = [self._step(seq, logits[row], greedy[row], replies) for row, seq in enumerate(live)]
            cancelled = replies.flush(s.id for s in live if s.finish is None)
            self._end_cancelled(live, cancelled, replies, should_stop())
            keep = [row for row, seq in enumerate(live) if seq.finish is None]
            if not keep:
                break
            if len(keep) < len(live):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                live, tokens = [live[r] for r in keep], [tokens[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            positions = positions + 1
            step_ids = torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(1)
            out = self.forward(step_ids, mask, positions, cache, [s.adapter for s in live] if mixed_rows else None)

    def _step(self, seq: Sequence, logits: torch.Tensor, greedy: int, replies: Replies) -> int:
        sampling = seq.request.sampling
        token = greedy if sampling.temperature == 0 else sample(logits, sampling.temperature, sampling.top_p,
                                                                seq.generator)
        text = seq.accept(token, self.stop_ids)
        if text:
            replies.send(seq.id, ReplyToken(text=text))
        if seq.finish is not None:
            replies.send(seq.id, seq.end(seq.finish))
        return token

    @staticmethod
    def _end_cancelled(live: list[Sequence], cancelled: set[str], replies: Replies, stopping: bool) -> None:
        for seq in live:
            if seq.finish is not None:
                continue
            if seq.id in cancelled:
                seq.finish = "cancelled"  # text held back as a possible stop string is dropped with the rest
                replies.send(seq.id, seq.end("cancelled"))
            elif stopping:
                seq.finish = "error"
                replies.send(seq.id, ReplyError(status=503, code="service_stopping",
                                                message="The generation service is shutting down; try again."))
