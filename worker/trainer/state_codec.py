"""Nested training state (optimizer, scheduler, RNG) as two plain-data files: tensors in NAME.safetensors, the
structure and every scalar in NAME.json.

torch.save/torch.load would pickle, and unpickling runs code: a checkpoint must stay data, wherever it was kept.
JSON cannot say tuple, int dictionary key or array, so those are written as small tagged objects.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

TENSOR, ARRAY, TUPLE, INT_KEYS, FLOAT = "__tensor__", "__ndarray__", "__tuple__", "__int_keys__", "__float__"
TAGS = {TENSOR, ARRAY, TUPLE, INT_KEYS, FLOAT}


def encode(value: Any, tensors: dict[str, torch.Tensor], path: str = "root") -> Any:
    """A JSON-able tree for value; its tensors and arrays are moved into `tensors` under their path."""
    if isinstance(value, torch.Tensor):
        # A copy: safetensors refuses tensors that share storage, and the state must not change while it is written.
        tensors[path] = value.detach().to("cpu", copy=True).contiguous()
        return {TENSOR: path}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {ARRAY: path, "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {TUPLE: [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return _encode_dict(value, tensors, path)
    if value is None or isinstance(value, bool | int | str) or isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, float):  # JSON has no inf/NaN; a tagged string keeps them exact
        return {FLOAT: repr(value)}
    raise TypeError(f"a checkpoint cannot hold {type(value).__name__} (at {path})")


def _encode_dict(value: dict, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if all(isinstance(k, str) for k in value):
        if TAGS & value.keys():
            raise TypeError(f"a state key at {path} collides with the checkpoint format's tags")
        return {k: encode(v, tensors, f"{path}.{k}") for k, v in value.items()}
    if all(isinstance(k, int) and not isinstance(k, bool) for k in value):
        return {INT_KEYS: [[k, encode(v, tensors, f"{path}.{k}")] for k, v in value.items()]}
    raise TypeError(f"a checkpoint needs dictionary keys that are all strings or all integers (at {path})")


def decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The state encode() described, rebuilt from its tree and tensors."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if TENSOR in value:
        return tensors[value[TENSOR]]
    if ARRAY in value:
        return tensors[value[ARRAY]].numpy().astype(value["dtype"], copy=True)
    if TUPLE in value:
        return tuple(decode(v, tensors) for v in value[TUPLE])
    if INT_KEYS in value:
        return {int(k): decode(v, tensors) for k, v in value[INT_KEYS]}
    if FLOAT in value:
        return float(value[FLOAT])
    return {k: decode(v, tensors) for k, v in value.items()}


def save(state: Any, folder: Path, name: str) -> list[Path]:
    """Write state as folder/NAME.json (+ NAME.safetensors when it holds tensors); returns the files written."""
    tensors: dict[str, torch.Tensor] = {}
    tree = encode(state, tensors)
    written = [folder / f"{name}.json"]
    written[0].write_text(json.dumps(tree), encoding="utf-8")
    if tensors:
        written.append(folder / f"{name}.safetensors")
        save_file(tensors, written[1])
    return written


def load(folder: Path, name: str) -> Any:
    """The state save() wrote under NAME in folder (tensors on the CPU)."""
    tensor_file = folder / f"{name}.safetensors"
    tensors = load_file(tensor_file) if tensor_file.is_file() else {}
    return decode(json.loads((folder / f"{name}.json").read_text(encoding="utf-8")), tensors)
