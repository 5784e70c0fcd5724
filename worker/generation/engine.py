"""The generation engine: loaded bases (bases.BasePool), each with its adapters (an LRU of PEFT adapters on one
PeftModel), turning requests into sequences and running them as one batch (decoding.Decoder)."""

from __future__ import annotations

import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from app.core.generation.protocol import BaseRef, GenerationRequest, ReplyError
from worker.generation.adapters import AdapterCache, Refused
from worker.generation.bases import BasePool, load_base, size_in_memory
from worker.generation.decoding import BASE, Decoder, Sequence
from worker.generation.replies import Replies
from worker.trainer.errors import TrainerError

log = logging.getLogger(__name__)
CHATML_END = "<|im_end|>"


@dataclass
class Arrival:
    """A request as the service received it (monotonic time, for time to first token)."""

    request: GenerationRequest
    at: float


def context_length(model: Any, tokenizer: Any) -> int | None:
    """The longest sequence the model takes: its config's max_position_embeddings, else the tokenizer's limit."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None and 0 < getattr(tokenizer, "model_max_length", 0) < 10**7:
        limit = tokenizer.model_max_length
    return limit


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Tokens that end a sequence: the generation config's and tokenizer's EOS, and ChatML's end of turn when the
    chat template uses it."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if CHATML_END in (tokenizer.chat_template or "") and CHATML_END in tokenizer.get_vocab():
        ids.add(tokenizer.convert_tokens_to_ids(CHATML_END))
    return ids


class LoadedBase:
    """One base model, its tokenizer, and up to max_adapters adapters loaded on it (least recently used first)."""

    def __init__(self, ref: BaseRef, model: Any, tokenizer: Any, device: str, cache: AdapterCache | None,
                 max_adapters: int) -> None:
        self.ref, self.base, self.tokenizer, self.device = ref, model, tokenizer, device
        self.cache, self.max_adapters = cache, max_adapters
        self.adapters: OrderedDict[str, str] = OrderedDict()  # sha256 → PEFT adapter name
        self.context = context_length(model, tokenizer)
        self.decoder = Decoder(model, tokenizer, device, stop_token_ids(model, tokenizer))
        self.batch_sizes: list[int] = []  # every batch run, for tests and logs

    def admit(self, arrivals: list[Arrival]) -> tuple[list[Arrival], list[Arrival]]:
        """(now, later): as many as fit one batch without more distinct adapters than can be loaded at once."""
        now, later, adapters = [], [], set()
        for arrival in arrivals:
            adapter = arrival.request.adapter
            key = adapter.sha256 if adapter else None
            if key is not None and key not in adapters and len(adapters) >= self.max_adapters:
                later.append(arrival)
                continue
            adapters |= {key} - {None}
            now.append(arrival)
        return now, later

    def run(self, arrivals: list[Arrival], replies: Replies, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Generate for these requests together; a request that cannot be served gets its ReplyError."""
        seqs = []
        for arrival in arrivals:
            try:
                seqs.append(self.prepare(arrival.request, arrival.at))
            except Refused as refused:
                replies.send(arrival.request.id, ReplyError(status=refused.status, code=refused.code,
                                                            message=refused.message))
            except Exception as exc:  # a chat template that refuses the conversation (jinja2 raises) is the request's
                template = type(exc).__module__.startswith("jinja2")
                if not template:
                    log.exception("could not prepare request %s", arrival.request.id)
                replies.send(arrival.request.id, ReplyError(
                    status=400 if template else 500, code="chat_template_error" if template else "prepare_failed",
                    message=str(exc)[:500]))
        replies.flush()
        if not seqs:
            return
        self.batch_sizes.append(len(seqs))
        try:
            self.decoder.run(seqs, replies, should_stop)
        except Exception as exc:
            log.exception("generation failed for a batch of %d on %s", len(seqs), self.ref.name)
            for seq in seqs:
                if seq.finish is None:
                    replies.send(seq.id, ReplyError(status=500, code="generation_failed", message=str(exc)[:500]))
            replies.flush()

    def prepare(self, request: GenerationRequest, arrived: float | None = None) -> Sequence:
        """The request as a sequence: prompt rendered and tokenized, context checked, adapter loaded."""
        rendered, ids = self.render(request)
        if not ids:
            if self.tokenizer.bos_token_id is None:
                raise Refused(400, "empty_prompt", "The prompt is empty, and this model has no token to start from.")
            ids = [self.tokenizer.bos_token_id]
        self.check_context(len(ids), request.sampling.max_tokens)
        adapter, sha = BASE, None
        if request.adapter is not None:
            adapter, sha = self.use_adapter(request), request.adapter.sha256
        return Sequence(request=request, prompt_ids=ids, rendered_prompt=rendered, adapter=adapter,
                        adapter_sha256=sha, arrived=arrived if arrived is not None else time.monotonic())

    def render(self, request: GenerationRequest) -> tuple[str, list[int]]:
        """(the prompt as text, its token ids): a chat through the chat template, as training renders it (the
        template writes any BOS itself); a raw prompt with the tokenizer's special tokens."""
        if request.messages is not None:
            messages = [m.model_dump() for m in request.messages]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return text, list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return request.prompt, list(self.tokenizer(request.prompt, add_special_tokens=True)["input_ids"])

    def check_context(self, prompt_tokens: int, max_tokens: int) -> None:
        """Refuse (400 context_length_exceeded) a prompt that, with max_tokens after it, passes the context."""
        if self.context is None or prompt_tokens + max_tokens <= self.context:
            return
        if prompt_tokens >= self.context:
            message = (f"The prompt is {prompt_tokens} tokens, and {self.ref.name} takes at most {self.context} "
                       "tokens in all; shorten the prompt.")
        else:
            message = (f"The prompt is {prompt_tokens} tokens and max_tokens is {max_tokens}, together past the "
                       f"{self.context} tokens {self.ref.name} takes; shorten the prompt or lower max_tokens to at "
                       f"most {self.context - prompt_tokens}.")
        raise Refused(400, "context_length_exceeded", message)

    def use_adapter(self, request: GenerationRequest) -> str:
        """The PEFT name of the request's adapter, loading it (and unloading the least recently used) if needed."""
        ref = request.adapter
        if self.cache is None:
            raise Refused(404, "adapter_not_found", "This engine has no adapter store.")
        if ref.sha256 in self.adapters:
            self.cache.check(ref)
            self.adapters.move_to_end(ref.sha256)
            return self.adapters[ref.sha256]
        folder = self.cache.folder(ref)
        name = f"a{ref.sha256[:16]}"
        try:
            self._load_adapter(folder, name)
        except Exception as exc:
            log.exception("could not load adapter %s on %s", ref.sha256, self.ref.name)
            raise Refused(500, "adapter_load_failed", f"The adapter of run {ref.run_id} could not be loaded on "
                          f"{self.ref.name}: {str(exc)[:300]}") from exc
        self.adapters[ref.sha256] = name
        while len(self.adapters) > self.max_adapters:
            _, old = self.adapters.popitem(last=False)
            with warnings.catch_warnings():  # "was active, now deleted": rows name their adapter, none is "active"
                warnings.simplefilter("ignore", UserWarning)
                self.decoder.model.delete_adapter(old)
        return name

    def _load_adapter(self, folder: Any, name: str) -> None:
        from peft import PeftModel

        if not self.decoder.mixed:
            self.decoder.model = PeftModel.from_pretrained(self.base, folder, adapter_name=name, is_trainable=False)
            self.decoder.mixed = True
        else:
            self.decoder.model.load_adapter(folder, adapter_name=name, is_trainable=False)
        self.decoder.model.eval()


class Engine:
    """Bases loaded on demand within a memory budget, each with its adapters."""

    def __init__(self, device: str, cache: AdapterCache | None, max_adapters: int = 8,
                 budget_bytes: int = 16 * 1024**3, dtype: torch.dtype | None = None) -> None:
        self.device, self.cache, self.max_adapters, self.dtype = device, cache, max_adapters, dtype
        self.bases = BasePool(budget_bytes, self._load, lambda loaded: size_in_memory(loaded.base))

    def _load(self, ref: BaseRef) -> LoadedBase:
        started = time.monotonic()
        model, tokenizer = load_base(ref, self.device, self.dtype)
        log.info("loaded base %s on %s in %.1f s", ref.name, self.device, time.monotonic() - started)
        return LoadedBase(ref, model, tokenizer, self.device, self.cache, self.max_adapters)

    def base(self, ref: BaseRef) -> LoadedBase:
        """The loaded base (loading it now if needed); Refused when it cannot be loaded."""
        try:
            return self.bases.get(ref)
        except TrainerError as exc:
            raise Refused(404 if exc.code == "model_not_found" else 500, exc.code, str(exc)) from exc
        except Exception as exc:  # a missing folder, a config transformers does not know, out of memory
            log.exception("could not load base %s", ref.name)
            raise Refused(500, "base_load_failed", f"The base model {ref.name} could not be loaded: "
                          f"{str(exc)[:300]}") from exc
