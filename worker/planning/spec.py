"""RunSpec: the one description of a training run, shared by the form, the API, YAML presets and the trainer.

Pydantic only (no torch): the web process imports this module.
"""

from __future__ import annotations

from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

TARGET_PRESETS: dict[str, list[str] | str] = {
    "attention": ["q_proj", "v_proj"],
    "all-linear": "all-linear",
}
# Bounds of data.max_seq_length: the doctor's length check and the dataset page use the same.
MIN_SEQ_LENGTH, MAX_SEQ_LENGTH, DEFAULT_SEQ_LENGTH = 8, 131072, 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Section):
    """Which base model to adapt."""

    base_model: str = Field(
        "",
        description="Hugging Face model id (e.g. HuggingFaceTB/SmolLM2-135M-Instruct) or a local folder "
        "registered in the studio.",
    )
    gguf_file: str | None = Field(
        None, description="File name of a GGUF checkpoint inside the base model folder, if it is one."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit); ignored for folders.")
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with the checkpoint. Off unless an admin allows it."
    )


class DataSpec(_Section):
    """Where the examples come from and how they become tokens."""

    # The upper bound is the studio's id column (PostgreSQL INTEGER); larger numbers name no dataset.
    dataset_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Id of a dataset uploaded to the studio.")
    path: str | None = Field(
        None,
        description="Local JSONL file in the studio's canonical form (set by the worker; the CLI fills it "
        "from a file of any supported format).",
    )
    max_seq_length: int = Field(
        DEFAULT_SEQ_LENGTH, ge=MIN_SEQ_LENGTH, le=MAX_SEQ_LENGTH,
        description="Longest tokenised example; longer ones are truncated.",
    )
    eval_fraction: float = Field(
        0.0, ge=0.0, lt=0.5, description="Share of examples held out for evaluation (0 disables evaluation)."
    )
    train_on: Literal["completions", "all"] = Field(
        "completions",
        description="'completions': loss only on assistant turns / completions (every assistant turn in "
        "multi-turn chats). 'all': loss on the whole text.",
    )
    packing: bool = Field(
        True,
        description="Pack each batch's examples into as few rows of at most max_seq_length tokens as they fit, "
        "attention kept within each example: the same examples per step and the same loss, without the "
        "compute and memory spent on padding.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.dataset_id is None and not self.path:
            raise ValueError("set data.dataset_id (a studio dataset) or data.path (a local file)")
        return self


class LoraSpec(_Section):
    """The low-rank adapter added to the frozen base."""

    r: int = Field(16, ge=1, le=1024, description="Rank of the update matrices; 8–64 is usual.")
    alpha: float = Field(32, gt=0, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input during training.")
    target_modules: Literal["attention", "all-linear"] | list[str] = Field(
        "all-linear",
        description="'attention' (q_proj, v_proj), 'all-linear' (every linear layer but the output head), "
        "or an explicit list of module names.",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases to train.")

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not [m for m in value if m.strip()]:
            raise ValueError("give at least one module name, or a preset: attention, all-linear")
        return value

    def resolved_targets(self) -> list[str] | str:
        """Module names (or PEFT's 'all-linear') for LoraConfig."""
        if isinstance(self.target_modules, list):
            return [m.strip() for m in self.target_modules if m.strip()]
        return TARGET_PRESETS[self.target_modules]


class QuantizationSpec(_Section):
    """4-bit quantisation of the frozen base (QLoRA only)."""

    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; NF4 suits normal weights.")
    double_quant: bool = Field(True, description="Quantise the quantisation constants too (saves ~0.4 bit/param).")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Dtype of the matmuls: 'auto' picks bfloat16 where the device supports it."
    )


Optimizer = Literal["auto", "adamw_torch", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit"]
# bitsandbytes' paged and 8-bit optimizers run on CUDA only: the trainer and the studio's checks both refuse them.
CUDA_ONLY_OPTIMIZERS = frozenset({"paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit"})


class TrainingSpec(_Section):
    """Optimisation settings, named as in transformers.TrainingArguments."""

    optimizer: Optimizer = Field(
        "auto",
        description="'auto': paged 8-bit AdamW for QLoRA on CUDA, AdamW otherwise. Paged and 8-bit "
        "optimizers need CUDA.",
    )
    learning_rate: float = Field(2e-4, gt=0, le=1.0, description="Peak learning rate.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warm-up."
    )
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    num_epochs: float = Field(
        1.0, gt=0, le=1000, description="Passes over the training set (ignored if max_steps > 0)."
    )
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimiser steps; -1 uses num_epochs.")
    per_device_batch_size: int = Field(4, ge=1, le=4096, description="Examples per forward pass.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096, description="Forward passes per optimiser step.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping (0 disables).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (~30% slower).")
    logging_steps: int = Field(1, ge=1, description="Report train metrics every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate every N steps (default: once per epoch)."
    )
    save_steps: int | None = Field(
        100, ge=1,
        description="Checkpoint every N optimiser steps (adapter, optimizer, scheduler, random states and data "
        "position, kept in the studio): a run whose worker dies resumes from the newest one. Empty: no "
        "checkpoints, so such a run starts over.",
    )
    seed: int = Field(42, description="Seed for data order, LoRA initialisation and dropout.")
    divergence_factor: float | None = Field(
        4.0, gt=1.0, le=1000.0,
        description="Fail the run as diverged when a training loss exceeds this multiple of the first logged "
        "loss (NaN/inf losses or gradient norms always fail it); null turns the explosion test off.",
    )


class RunSpec(_Section):
    """Everything the trainer needs to reproduce a run."""

    name: str = Field("", max_length=200, description="A label for the run; empty picks one.")
    method: Literal["lora", "qlora"] = Field("lora", description="'qlora' loads the base in 4 bit.")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: Annotated[DataSpec, Field(description="Dataset and tokenisation.")]
    lora: LoraSpec = Field(default_factory=LoraSpec)
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @field_validator("quantization")
    @classmethod
    def _quantization_needs_qlora(cls, value: QuantizationSpec, info: ValidationInfo) -> QuantizationSpec:
        # Plain LoRA keeps the base in full precision, so these settings would be silently ignored.
        if info.data.get("method") == "lora" and value != QuantizationSpec():
            raise ValueError("quantization settings apply only to method qlora; set method: qlora or remove them")
        return value

    def to_yaml(self) -> str:
        """The spec as YAML, the format of presets and `lorastudio train`."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> RunSpec:
        """Parse and validate a YAML spec."""
        return cls.model_validate(yaml.safe_load(text) or {})
