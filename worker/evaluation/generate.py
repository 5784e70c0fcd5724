"""Generation for an evaluation: the engine of worker.generation, in this process, on the base with the adapter
folder the job exported; base and adapter rows of the same prompt decoded together in mixed batches, greedily."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.generation.protocol import AdapterRef, GenerationRequest, ReplyError, ReplyStart, Sampling
from worker.evaluation.inputs import EvaluationInputs
from worker.generation.adapters import Refused
from worker.generation.engine import Arrival, Engine, LoadedBase
from worker.generation.replies import CollectedReplies

Key = tuple[str, int, str]  # (part, position in the part, "base" | "adapter")


class EvaluationFailed(Exception):
    """The evaluation cannot go on: a stable code and a message naming the example where one is to blame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class FolderAdapters:
    """The engine's adapter store for one adapter already on disk (the job checked its files' hash)."""

    def __init__(self, folder: Path, sha256: str) -> None:
        self.path, self.sha256 = Path(folder), sha256

    def check(self, ref: AdapterRef) -> None:
        """Refused unless ref is this adapter."""
        if ref.sha256 != self.sha256:
            raise Refused(404, "adapter_not_found", f"This evaluation has adapter {self.sha256}, not {ref.sha256}.")

    def folder(self, ref: AdapterRef) -> Path:
        """The adapter's folder."""
        self.check(ref)
        return self.path


def load(inputs: EvaluationInputs, device: str, dtype: Any = None) -> LoadedBase:
    """The base loaded (and its adapter store set) on device; EvaluationFailed when it cannot be."""
    adapters = FolderAdapters(Path(inputs.adapter_dir), inputs.adapter.sha256) if inputs.adapter else None
    engine = Engine(device, adapters, max_adapters=1, dtype=dtype)  # type: ignore[arg-type]
    try:
        return engine.base(inputs.base)
    except Refused as refused:
        raise EvaluationFailed(refused.code, refused.message) from None


def requests(inputs: EvaluationInputs, part: str, examples: list[dict[str, Any]]) -> list[tuple[Key, Any]]:
    """Each example's base request, then (beside it, so both land in one batch) its adapter request; greedy."""
    sampling = Sampling(max_tokens=inputs.max_new_tokens, temperature=0.0, seed=inputs.seed)
    out: list[tuple[Key, Any]] = []
    for position, example in enumerate(examples):
        prompt = {"prompt": example["prompt"]} if "prompt" in example else {"messages": example["messages"]}
        out.append(((part, position, "base"), GenerationRequest(base=inputs.base, sampling=sampling, **prompt)))
        if inputs.adapter is not None:
            out.append(((part, position, "adapter"), GenerationRequest(base=inputs.base, adapter=inputs.adapter,
                                                                       sampling=sampling, **prompt)))
    return out


def check_prompts(loaded: LoadedBase, items: list[tuple[Key, Any]], where: Callable[[Key], str]) -> None:
    """Refuse, before generating anything, a prompt that is empty or passes the context with max_new_tokens."""
    for key, request in items:
        if key[2] != "base":
            continue
        _, ids = loaded.render(request)
        if not ids and loaded.tokenizer.bos_token_id is None:
            raise EvaluationFailed("empty_prompt", f"{where(key)}: the prompt is empty.")
        try:
            loaded.check_context(max(len(ids), 1), request.sampling.max_tokens)
        except Refused as refused:
            raise EvaluationFailed(refused.code, f"{where(key)}: {refused.message}") from None


def generate(loaded: LoadedBase, items: list[tuple[Key, Any]], batch_size: int, where: Callable[[Key], str],
             progress: Callable[[int], None]) -> dict[Key, tuple[str, str | None]]:
    """(text, adapter sha256 the engine applied) of every request; EvaluationFailed on the first that fails."""
    size = batch_size + batch_size % 2  # even: an example's base and adapter rows stay in one batch
    outputs: dict[Key, tuple[str, str | None]] = {}
    for first in range(0, len(items), size):
        chunk = items[first:first + size]
        replies = CollectedReplies()
        loaded.run([Arrival(request, time.monotonic()) for _, request in chunk], replies)
        for key, request in chunk:
            last = replies.last(request.id)
            if isinstance(last, ReplyError):
                raise EvaluationFailed(last.code, f"{where(key)}: {last.message}")
            start = replies.events[request.id][0]
            applied = start.adapter_sha256 if isinstance(start, ReplyStart) else None
            outputs[key] = (replies.text(request.id), applied)
        progress(len(outputs))
    return outputs
