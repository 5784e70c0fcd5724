"""Base models for generation, loaded as training loads them (worker.trainer.model), and the least recently used
ones unloaded when the next would pass the memory budget."""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.core.generation.protocol import BaseRef
from worker.planning.inputs import TrainingInputs
from worker.planning.spec import RunSpec
from worker.trainer.examples import ensure_chat_template
from worker.trainer.model import _base_model, supports_bf16
from worker.trainer.tokenizers import load_tokenizer

log = logging.getLogger(__name__)


def inference_dtype(device: str) -> torch.dtype:
    """bfloat16 where its matmuls are native (as training computes there), else float32."""
    return torch.bfloat16 if supports_bf16(device) else torch.float32


def load_base(ref: BaseRef, device: str, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a registered base, loaded the way a LoRA run loads it (safetensors only, GGUF
    dequantised, the same tokenizer with a pad token and, lacking a chat template, ChatML and the resized
    embeddings training gives it), in eval mode and `dtype` (default: inference_dtype)."""
    model_spec = {"base_model": ref.ref, "gguf_file": ref.gguf_file, "trust_remote_code": ref.trust_remote_code}
    spec = RunSpec(method="lora", model=model_spec, data={"path": "-"})
    inputs = TrainingInputs(model_ref=ref.ref, gguf_file=ref.gguf_file, data_path="-")
    tokenizer = load_tokenizer(spec, inputs)
    ensure_chat_template(tokenizer)
    model = _base_model(spec, device, inputs)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # as load_model does for ChatML markers
    model.to(dtype or inference_dtype(device))
    model.eval()
    return model, tokenizer


def size_on_disk(ref: BaseRef) -> int:
    """The bytes of a local base's weight files (a first guess at its size in memory; 0 for a hub id)."""
    folder = Path(ref.ref).expanduser()
    if not folder.is_dir():
        return 0
    if ref.gguf_file:
        return (folder / ref.gguf_file).stat().st_size if (folder / ref.gguf_file).is_file() else 0
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def size_in_memory(model: Any) -> int:
    """The bytes of a model's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


class BasePool:
    """Loaded bases by BaseRef, least recently used first; together within budget_bytes when they can be (a
    single base larger than the budget is still loaded, alone)."""

    def __init__(self, budget_bytes: int, make: Callable[[BaseRef], Any], size: Callable[[Any], int]) -> None:
        self.budget = budget_bytes
        self.make, self.size = make, size
        self.loaded: OrderedDict[BaseRef, tuple[Any, int]] = OrderedDict()

    def get(self, ref: BaseRef) -> Any:
        """The loaded base for ref, loading it (after unloading others to make room) when needed."""
        if ref in self.loaded:
            self.loaded.move_to_end(ref)
            return self.loaded[ref][0]
        self._make_room(size_on_disk(ref))
        item = self.make(ref)
        self.loaded[ref] = (item, self.size(item))
        self._make_room(0)
        return item

    def names(self) -> tuple[str, ...]:
        """The names of the loaded bases."""
        return tuple(ref.name for ref in list(self.loaded))  # a copy: another thread asks

    def _make_room(self, more: int) -> None:
        """Unload the least recently used bases until `more` bytes fit (keeping the newest when more is 0)."""
        keep = 0 if more else 1
        while len(self.loaded) > keep and sum(s for _, s in self.loaded.values()) + more > self.budget:
            ref, _ = self.loaded.popitem(last=False)
            log.info("unloading base %s to stay within %d bytes", ref.name, self.budget)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
