"""Checking a PEFT LoRA adapter brought from elsewhere before it is stored: safetensors only (pickle runs code), a
config PEFT can read, a file that is whole, and tensors whose shapes fit the base model it is registered on.

Nothing is loaded: a safetensors file is an 8-byte header length, a JSON header naming each tensor's dtype, shape
and byte range, then the bytes; the header is read with the standard library, and the base's config.json as JSON.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import StudioError

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PICKLED = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MAX_CONFIG_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_RANK = 4096
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
LORA_TENSOR = re.compile(r"(?P<module>.+)\.lora_(?P<side>[AB])(?:\.[A-Za-z0-9_]+)?\.weight")
LAYER = re.compile(r"\.layers\.([0-9]+)\.")


@dataclass(frozen=True)
class Tensor:
    """One tensor of a safetensors header."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def refuse(code: str, message: str, field: str) -> StudioError:
    """A 422 about the imported files."""
    return StudioError("invalid", code, message, field=field)


def check_file_names(names: Sequence[str]) -> None:
    """Only the two files PEFT saves with safe_serialization; a pickled adapter is refused, saying how to convert."""
    for name in names:
        if name.lower().endswith(PICKLED):
            raise refuse("pickle_refused", f"{name} is a pickle file: loading one runs whatever code it holds. Save "
                         "the adapter with safe_serialization=True (PEFT's default) and import "
                         f"{WEIGHTS}.", "weights")


def check_config(raw: bytes) -> dict[str, Any]:
    """adapter_config.json as a LoRA config PEFT can read: bounded, JSON, peft_type LORA, a rank in bounds, target
    modules given."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise refuse("config_too_large", f"{CONFIG} is {len(raw)} bytes; at most {MAX_CONFIG_BYTES}.", "config")
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise refuse("config_not_json", f"{CONFIG} is not JSON ({exc}).", "config") from None
    if not isinstance(config, dict):
        raise refuse("config_not_object", f"{CONFIG} must be a JSON object.", "config")
    if config.get("peft_type", "LORA") != "LORA":
        raise refuse("not_lora", f"{CONFIG} says peft_type {str(config.get('peft_type'))[:40]!r}: only LoRA "
                     "adapters are imported.", "config")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= MAX_RANK:
        raise refuse("bad_rank", f"{CONFIG}'s r must be a whole number from 1 to {MAX_RANK}.", "config")
    targets = config.get("target_modules")
    if not targets or not isinstance(targets, str | list):
        raise refuse("no_target_modules", f"{CONFIG} names no target_modules.", "config")
    return config


def read_header(path: Path) -> list[Tensor]:
    """The tensors a safetensors file on disk declares (header_of)."""
    with path.open("rb") as fileobj:
        def read(start: int, length: int) -> bytes:
            fileobj.seek(start)
            return fileobj.read(length)

        return header_of(read, path.stat().st_size)


def header_of(read: Callable[[int, int], bytes], size: int) -> list[Tensor]:
    """The tensors a safetensors file of `size` bytes declares, read(start, length) giving its bytes; refused when
    the header is unreadable or the file is shorter (or longer) than the header says."""
    start = read(0, 8)
    if len(start) < 8:
        raise refuse("not_safetensors", f"{WEIGHTS} is {size} bytes: too short to be safetensors.", "weights")
    (length,) = struct.unpack("<Q", start)
    if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
        raise refuse("not_safetensors", f"{WEIGHTS} does not start with a safetensors header (it declares "
                     f"{length} header bytes in a {size}-byte file).", "weights")
    try:
        header = json.loads(read(8, length))
    except ValueError:
        raise refuse("not_safetensors", f"{WEIGHTS}'s header is not JSON: not a safetensors file.",
                     "weights") from None
    if not isinstance(header, dict):
        raise refuse("not_safetensors", f"{WEIGHTS}'s header is not a JSON object.", "weights")
    tensors, end = [], 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (first, last) = entry["dtype"], tuple(int(n) for n in entry["shape"]), entry["data_offsets"]
            expected = DTYPE_BYTES[dtype]
            for dim in shape:
                expected *= dim
        except (KeyError, TypeError, ValueError):
            raise refuse("not_safetensors", f"{WEIGHTS}: tensor {name[:100]!r} is not described as safetensors "
                         "describes one.", "weights") from None
        if last - first != expected or first < 0:
            raise refuse("not_safetensors", f"{WEIGHTS}: tensor {name[:100]!r} spans {last - first} bytes, its dtype "
                         f"and shape need {expected}.", "weights")
        end = max(end, last)
        tensors.append(Tensor(name, dtype, shape))
    if size - 8 - length != end:
        raise refuse("truncated", f"{WEIGHTS} is {size} bytes, but its header describes {8 + length + end}: the "
                     "file is truncated or has something appended. Upload it again.", "weights")
    if not tensors:
        raise refuse("no_tensors", f"{WEIGHTS} holds no tensors.", "weights")
    return tensors


def check_shapes(tensors: list[Tensor], config: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    """Each LoRA pair's rank and sizes against the config and the base's config.json; a precise refusal for the first
    that does not fit, else the warnings (what could not be checked)."""
    warnings = []
    lora = [(match, t) for t in tensors if (match := LORA_TENSOR.fullmatch(t.name))]
    if not lora:
        raise refuse("no_lora_tensors", f"{WEIGHTS} holds no lora_A / lora_B tensors: not a LoRA adapter.",
                     "weights")
    pattern = config.get("rank_pattern") or {}
    expected_sizes = _module_sizes(base) if base else {}
    layers = _int(base, "num_hidden_layers") if base else None
    for match, tensor in lora:
        module, side = match.group("module"), match.group("side")
        if len(tensor.shape) != 2:
            raise refuse("bad_shape", f"{tensor.name}: a LoRA weight has 2 dimensions, not {len(tensor.shape)}.",
                         "weights")
        rank = next((r for key, r in pattern.items() if module.endswith(key)), config["r"])
        have = tensor.shape[0] if side == "A" else tensor.shape[1]
        if have != rank:
            raise refuse("rank_mismatch", f"{tensor.name} has rank {have}; {CONFIG} says r = {rank}.", "weights")
        layer = LAYER.search(module + ".")
        if layers is not None and layer and int(layer.group(1)) >= layers:
            raise refuse("layer_mismatch", f"{tensor.name} is for layer {layer.group(1)}; the base has {layers} "
                         f"layers (0 to {layers - 1}).", "weights")
        kind = module.rsplit(".", 1)[-1]
        sizes = expected_sizes.get(kind)
        if sizes is None:
            continue
        size = tensor.shape[1] if side == "A" else tensor.shape[0]
        wanted = sizes[0] if side == "A" else sizes[1]
        if size != wanted:
            what = "in_features" if side == "A" else "out_features"
            raise refuse("shape_mismatch", f"{tensor.name}: {what} {size}, but the base's {kind} has {wanted} "
                         "(a different model or model size).", "weights")
    if base is None:
        warnings.append("The base's config.json could not be read (a hub model the web does not download): sizes "
                        "were not checked against it; the generation service checks them when it loads the adapter.")
    unknown = sorted({m.group("module").rsplit(".", 1)[-1] for m, _ in lora} - set(expected_sizes)) if base else []
    if unknown:
        warnings.append(f"Sizes of {', '.join(unknown[:8])} were not checked (module kinds this check does not know).")
    return warnings


def _int(config: dict[str, Any] | None, key: str) -> int | None:
    value = (config or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _module_sizes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of a Llama-style block's linear layers, from config.json; empty when the config
    lacks the sizes."""
    hidden, heads = _int(config, "hidden_size"), _int(config, "num_attention_heads")
    if hidden is None or heads is None:
        return {}
    kv_heads = _int(config, "num_key_value_heads") or heads
    head_dim = _int(config, "head_dim") or hidden // heads
    sizes = {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv_heads * head_dim),
             "v_proj": (hidden, kv_heads * head_dim), "o_proj": (heads * head_dim, hidden)}
    if (intermediate := _int(config, "intermediate_size")) is not None:
        sizes |= {"gate_proj": (hidden, intermediate), "up_proj": (hidden, intermediate),
                  "down_proj": (intermediate, hidden)}
    return sizes


def base_config(source: str, ref: str) -> dict[str, Any] | None:
    """A local base's config.json as JSON (None for a hub model, or one whose config cannot be read)."""
    if source != "local":
        return None
    try:
        data = json.loads((Path(ref) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
