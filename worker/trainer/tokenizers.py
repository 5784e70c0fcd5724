"""A base model's tokenizer, loaded as a run loads it: no torch, so the dataset doctor's worker stays light."""

from __future__ import annotations

from typing import Any

from worker.planning.inputs import TrainingInputs
from worker.planning.spec import RunSpec


def source_kwargs(spec: RunSpec, inputs: TrainingInputs) -> dict[str, Any]:
    """from_pretrained keyword arguments naming where the weights come from."""
    kwargs: dict[str, Any] = {"trust_remote_code": spec.model.trust_remote_code}
    if spec.model.revision:
        kwargs["revision"] = spec.model.revision
    if inputs.gguf_file:
        kwargs["gguf_file"] = inputs.gguf_file
    return kwargs


def load_tokenizer(spec: RunSpec, inputs: TrainingInputs | None = None) -> Any:
    """The base model's tokenizer, with a pad token (EOS when it has none)."""
    inputs = inputs or TrainingInputs.from_spec(spec)
    return _tokenizer(inputs.model_ref, source_kwargs(spec, inputs))


def load_tokenizer_from(ref: str, gguf_file: str | None = None) -> Any:
    """A registered model's tokenizer without a RunSpec (the dataset doctor), loaded as a run would."""
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return _tokenizer(ref, kwargs)


def _tokenizer(ref: str, kwargs: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
