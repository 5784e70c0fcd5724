"""What the export child is given (one JSON file, written by the export job kind) and what it reports: torch-free."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.generation.protocol import BaseRef

ExportFormat = Literal["merged", "gguf", "gguf_lora"]
FORMATS: dict[str, str] = {
    "merged": "the base with the adapter merged in, 16-bit safetensors with tokenizer and chat template",
    "gguf": "the merged model as GGUF for llama.cpp, f16 and Q8_0",
    "gguf_lora": "the adapter as a GGUF LoRA file for llama.cpp (with the base as f16 GGUF to apply it to)",
}
GGUF_TYPES = ("f16", "q8_0")  # what convert_hf_to_gguf.py writes itself (Q4_K_M needs llama.cpp's quantize tool)


class ExportInputs(BaseModel):
    """One export: the base as registered, the version's adapter folder (exported and hash-checked by the job kind),
    the prompts its generations are verified on, and where llama.cpp's converters are."""

    model_config = ConfigDict(extra="forbid")

    format: ExportFormat
    base: BaseRef
    adapter_dir: str
    adapter_sha256: str
    stem: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # file names: <stem>.gguf, <stem>-q8_0.gguf …
    prompts: list[str] = Field(min_length=1, max_length=64)  # user messages, rendered by the base's chat template
    max_new_tokens: int = Field(32, ge=1, le=256)
    min_agreement: float = Field(0.9, ge=0.0, le=1.0)  # teacher-forced top-1 agreement an export must reach
    llama_cpp_dir: str | None = None  # llama.cpp's converters (convert_*_to_gguf.py, gguf-py); None: the default
    # The RunSpec the adapter was trained with (the version's lineage): a QLoRA adapter is merged into the 16-bit
    # base, and the report says how far that moves it from the 4-bit base it was trained on.
    spec: dict[str, Any] | None = None

    @property
    def trained_4bit(self) -> bool:
        """True for an adapter QLoRA trained (on a 4-bit base)."""
        return bool(self.spec) and self.spec.get("method") == "qlora"


class ExportFile(BaseModel):
    """A file the export wrote into its out folder."""

    model_config = ConfigDict(extra="forbid")

    name: str  # relative to the out folder, e.g. "model.safetensors" or "quokka-v2-q8_0.gguf"
    size: int
    sha256: str


def gguf_file_names(stem: str, base_name: str) -> dict[str, str]:
    """The GGUF files' names an export writes (and the serving commands name): merged f16 and q8_0, the LoRA,
    and the base the LoRA applies to."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", base_name)[:80] or "base"
    return {"f16": f"{stem}-f16.gguf", "q8_0": f"{stem}-q8_0.gguf", "lora": f"{stem}-lora-f16.gguf",
            "base": f"{base}-f16.gguf"}
