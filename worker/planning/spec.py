"""RunSpec: the one description of a training run, shared by the form, the API, YAML presets and the trainer.

Pydantic only (no torch): the web process imports this module.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from worker.planning import device_classes, safe_yaml

TARGET_PRESETS: dict[str, list[str] | str] = {
    "attention": ["q_proj", "v_proj"],
    "all-linear": "all-linear",
}
# Bounds of data.max_seq_length: the doctor's length check and the dataset page use the same.
MIN_SEQ_LENGTH, MAX_SEQ_LENGTH, DEFAULT_SEQ_LENGTH = 8, 131072, 1024
# Bound of data.system_prompt: the doctor's form and the analyses that store one use the same.
MAX_SYSTEM_PROMPT = 4000
# Bounds that keep one spec from holding a worker for days or its matching from going quadratic (issue 16).
MAX_TARGET_MODULES, MAX_MODULE_NAME = 64, 100
MODULE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
MAX_STEPS = 1_000_000  # optimizer steps of one run; also the largest logging/eval/save interval
MAX_SEED = 2**32 - 1  # numpy's seed range (transformers.set_seed seeds numpy too)
MAX_TEXT = 4096  # any other text field (a path's PATH_MAX)


class _Section(BaseModel):
    # Every number finite (NaN and inf are refused, not stored as null), every text bounded, and an error's text
    # never repeats the input it was given.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=MAX_TEXT,
                              hide_input_in_errors=True)


class ModelSpec(_Section):
    """Which base model to adapt."""

    base_model: str = Field(
        "", max_length=1000,
        description="The studio name of a registered base model (its Hugging Face id works too, e.g. "
        "HuggingFaceTB/SmolLM2-135M-Instruct; a local folder's path only for admins).",
    )
    gguf_file: str | None = Field(
        None, max_length=255,
        description="File name (no folders, ending in .gguf) of a GGUF checkpoint inside the registered base "
        "model's folder or hub repository, if it is one.",
    )
    revision: str | None = Field(
        None, max_length=100,
        description="Hub revision: a branch, a tag or a 40-hex commit (letters, digits, '.', '_', '-'; no '/' or "
        "'..'); ignored for folders.",
    )
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with the checkpoint. Off unless an admin allows it."
    )

    @field_validator("base_model")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("give a registered model's name (printable characters only)")
        return value.strip()

    @field_validator("gguf_file", "revision", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("gguf_file")
    @classmethod
    def _plain_gguf_name(cls, value: str | None) -> str | None:
        return None if value is None else cls.check_gguf_name(value)

    @field_validator("revision")
    @classmethod
    def _plain_revision(cls, value: str | None) -> str | None:
        allowed = all(c.isascii() and (c.isalnum() or c in "._-") for c in value or "x")
        if value is not None and (not allowed or ".." in value or value[0] in ".-"):
            raise ValueError("give a branch, a tag or a 40-hex commit: letters, digits, '.', '_' and '-' only, "
                             "not starting with '.' or '-', no '/' or '..'")
        return value

    @staticmethod
    def check_gguf_name(name: str) -> str:
        """name if it is a plain GGUF file name (no folder, no '..', printable, *.gguf), else a ValueError.

        The studio, the registration and the worker all use it: a name never leaves its model's folder."""
        if (any(sep in name for sep in "/\\:") or ".." in name or not name.isprintable() or len(name) > 255
                or not name.lower().endswith(".gguf") or name.startswith(".")):
            raise ValueError("give the file name of a .gguf file inside the model's folder (no folders, no '..')")
        return name


class DataSpec(_Section):
    """Where the examples come from and how they become tokens."""

    # The upper bound is the studio's id column (PostgreSQL INTEGER); larger numbers name no dataset.
    dataset_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Id of a dataset uploaded to the studio.")
    path: str | None = Field(
        None, max_length=MAX_TEXT,
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
    system_prompt: str | None = Field(
        None, max_length=MAX_SYSTEM_PROMPT,
        description="System turn inserted at the start of every chat example (messages, alpaca, sharegpt) that "
        "has none; it replaces the default system prompt some chat templates insert (SmolLM2's, Qwen's), which "
        "may contradict what the data teaches, such as an identity. It is context only, never trained on (with "
        "train_on 'all' too). Text and prompt/completion examples use no chat template, so it does not apply to "
        "them. Empty: none inserted.",
    )
    packing: bool = Field(
        True,
        description="Pack each batch's examples into as few rows of at most max_seq_length tokens as they fit, "
        "attention kept within each example: the same examples per step and the same loss, without the "
        "compute and memory spent on padding.",
    )

    @field_validator("system_prompt")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.dataset_id is None and not self.path:
            raise ValueError("set data.dataset_id (a studio dataset) or data.path (a local file)")
        return self


class LoraSpec(_Section):
    """The low-rank adapter added to the frozen base."""

    r: int = Field(16, ge=1, le=1024, description="Rank of the update matrices; 8–64 is usual.")
    alpha: float = Field(32, gt=0, le=100_000, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input during training.")
    target_modules: Literal["attention", "all-linear"] | list[str] = Field(
        "all-linear",
        description="'attention' (q_proj, v_proj), 'all-linear' (every linear layer but the output head), "
        f"or an explicit list of at most {MAX_TARGET_MODULES} module names (letters, digits, '_', '.', '-'; "
        f"at most {MAX_MODULE_NAME} characters each).",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases to train.")
    use_rslora: bool = Field(False, description="rsLoRA: scale the update by alpha / sqrt(r) instead of alpha / r, "
                             "so higher ranks keep learning (PEFT's use_rslora).")
    use_dora: bool = Field(False, description="DoRA: learn each weight's magnitude apart from its direction "
                           "(PEFT's use_dora); closer to full fine-tuning, slower per step, and not every server "
                           "serves it as a separate adapter (merge it to serve anywhere).")

    @field_validator("target_modules", mode="before")
    @classmethod
    def _few_names(cls, value: object) -> object:
        # Counted before each name is validated: PEFT matches every module against every name.
        if isinstance(value, list | tuple) and len(value) > MAX_TARGET_MODULES:
            raise ValueError(f"give at most {MAX_TARGET_MODULES} module names (this list has {len(value)}), "
                             "or a preset: attention, all-linear")
        return value

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not [m for m in value if m.strip()]:
            raise ValueError("give at least one module name, or a preset: attention, all-linear")
        if isinstance(value, list):
            for name in (m.strip() for m in value if m.strip()):
                _check_module_name(name)
        return value

    def resolved_targets(self) -> list[str] | str:
        """Module names (or PEFT's 'all-linear') for LoraConfig."""
        if isinstance(self.target_modules, list):
            return [m.strip() for m in self.target_modules if m.strip()]
        return TARGET_PRESETS[self.target_modules]


def _check_module_name(name: str) -> None:
    """A ValueError unless `name` is a plain module name such as q_proj or self_attn.o_proj."""
    if len(name) > MAX_MODULE_NAME or not re.fullmatch(MODULE_NAME, name):
        shown = name if len(name) <= 40 else name[:39] + "…"
        raise ValueError(f"{shown!r} is not a module name: use letters, digits, '_', '.' and '-', at most "
                         f"{MAX_MODULE_NAME} characters (e.g. q_proj)")


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
    weight_decay: float = Field(0.0, ge=0.0, le=10.0, description="AdamW weight decay.")
    num_epochs: float = Field(
        1.0, gt=0, le=1000, description="Passes over the training set (ignored if max_steps > 0)."
    )
    max_steps: int = Field(
        -1, ge=-1, le=MAX_STEPS,
        description=f"Stop after this many optimiser steps (at most {MAX_STEPS:,}); -1 uses num_epochs.",
    )
    per_device_batch_size: int = Field(4, ge=1, le=4096, description="Examples per forward pass.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096, description="Forward passes per optimiser step.")
    max_grad_norm: float = Field(1.0, ge=0, le=1e6, description="Gradient clipping (0 disables).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory (~30% slower).")
    logging_steps: int = Field(1, ge=1, le=MAX_STEPS, description="Report train metrics every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="Evaluate every N steps (default: once per epoch)."
    )
    save_steps: int | None = Field(
        100, ge=1, le=MAX_STEPS,
        description="Checkpoint every N optimiser steps (adapter, optimizer, scheduler, random states and data "
        "position, kept in the studio): a run whose worker dies resumes from the newest one. Empty: no "
        "checkpoints, so such a run starts over.",
    )
    seed: int = Field(
        42, ge=0, le=MAX_SEED, description="Seed for data order, LoRA initialisation and dropout (0 to 2^32 - 1)."
    )
    divergence_factor: float | None = Field(
        4.0, gt=1.0, le=1000.0,
        description="Fail the run as diverged when a training loss exceeds this multiple of the first logged "
        "loss (NaN/inf losses or gradient norms always fail it); null turns the explosion test off.",
    )


MAX_GPUS = 8  # GPUs of one host a run may train on at once (DDP); one node, never several
MAX_SAMPLE_PROMPTS = 16  # prompts sampled at each evaluation (each one a generation)
MAX_SAMPLE_TOKENS = 512  # new tokens per sampled answer
MAX_SAMPLE_TEXT = 2000  # characters of a prompt or an expected answer given in the spec
MAX_PROMPT_FILE = MAX_SAMPLE_PROMPTS * (2 * MAX_SAMPLE_TEXT + 64)  # a prompt file's text: every prompt at its longest


class ResourcesSpec(_Section):
    """Where the run trains: the class of worker it is routed to (worker.planning.device_classes)."""

    device_class: str = Field(
        "auto", max_length=8, pattern=device_classes.CHOICE_PATTERN,
        description="'auto': bases over 1.5 B parameters go to a GPU with room for the estimate, smaller ones to any "
        "worker; 'any'; 'cpu'; 'gpu' (a GPU with room for the estimate); or a GPU size such as gpu24 or gpu80 "
        "(at least that many GB).",
    )

    gpus: int = Field(
        1, ge=1, le=MAX_GPUS,
        description="GPUs of one host the run trains on at once (data parallel: each takes per_device_batch_size "
        "examples a step, so the effective batch is gpus x per_device_batch_size x gradient_accumulation_steps). "
        "Above 1 it needs a GPU worker with at least that many GPUs.",
    )

    @field_validator("device_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        return device_classes.check_choice(value)

    @model_validator(mode="after")
    def _gpus_need_a_gpu(self) -> ResourcesSpec:
        if self.gpus > 1 and self.device_class == device_classes.CPU:
            raise ValueError(f"gpus is {self.gpus}, but device_class is cpu: a run on several GPUs needs a GPU "
                             "worker (set device_class to auto, gpu or a GPU size, or gpus to 1)")
        return self


class SamplePrompt(_Section):
    """A prompt to sample during training, with the answer it should get (optional)."""

    prompt: str = Field(..., min_length=1, max_length=MAX_SAMPLE_TEXT, description="The user's message.")
    expected: str | None = Field(None, max_length=MAX_SAMPLE_TEXT, description="The answer it should get.")
    scorer: Literal["exact", "contains", "regex"] | None = Field(
        None, description="How each answer is checked against expected: exact (whitespace normalised), contains "
        "(any case), or regex (expected is the pattern, searched in the answer); the run page marks each answer "
        "as passing or not.",
    )

    @model_validator(mode="after")
    def _scorable(self) -> SamplePrompt:
        if self.scorer is not None and not self.expected:
            raise ValueError(f"the {self.scorer} scorer checks the answer against expected: give expected")
        if self.scorer == "regex":
            try:
                regex.compile(self.expected)
            except regex.error as exc:
                raise ValueError(f"expected is not a valid regex pattern ({exc})") from None
        return self


class SamplesSpec(_Section):
    """Answers generated during training: the base model's once, the adapter's at each evaluation and at the end."""

    count: int = Field(
        3, ge=0, le=MAX_SAMPLE_PROMPTS,
        description=f"Prompts answered at each evaluation and at the end (0 turns sampling off; at most "
        f"{MAX_SAMPLE_PROMPTS}): the given prompts, else a fixed sample of the held-out examples.",
    )
    max_new_tokens: int = Field(
        48, ge=1, le=MAX_SAMPLE_TOKENS, description="Longest sampled answer, in tokens (greedy decoding)."
    )
    budget: float = Field(
        0.10, ge=0.0, le=1.0,
        description="Largest share of training time spent sampling: a round that would exceed it is skipped "
        "(the base model's answers and the final ones always run, unless the run is cancelled); 1: no limit.",
    )
    prompts: list[SamplePrompt] = Field(
        default_factory=list, max_length=MAX_SAMPLE_PROMPTS,
        description=f"Prompts to sample (at most {MAX_SAMPLE_PROMPTS}, each with an optional expected answer); "
        "empty: held-out examples (data.eval_fraction > 0), or none. A prompt file's text is read too: JSON Lines, "
        'one {"prompt": …, "expected": …, "scorer": …} per line.',
    )

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompt_file(cls, value: object) -> object:
        """A prompt file's text (JSON Lines) as the list it holds; each refusal names its line."""
        return prompt_lines(value) if isinstance(value, str) else value


def prompt_lines(text: str) -> list[dict]:
    """The prompts of a JSON Lines prompt file, each line checked as a SamplePrompt; blank lines are skipped.

    Bounded before it is parsed: the text's size, then the number of lines."""
    if len(text) > MAX_PROMPT_FILE:
        raise ValueError(f"the prompt file has {len(text)} characters; at most {MAX_PROMPT_FILE} are read")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(lines) > MAX_SAMPLE_PROMPTS:
        raise ValueError(f"the prompt file has {len(lines)} prompts; at most {MAX_SAMPLE_PROMPTS} are sampled")
    prompts = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {n} is not JSON ({exc.msg} at column {exc.colno}); each line holds one "
                             '{"prompt": "…", "expected": "…"}') from None
        if not isinstance(row, dict):
            raise ValueError(f'line {n} is not an object: write {{"prompt": "…"}} (and optionally "expected")')
        try:
            prompts.append(SamplePrompt.model_validate(row).model_dump())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f", {p}" for p in first["loc"])
            raise ValueError(f"line {n}{where}: {first['msg'].removeprefix('Value error, ')}") from None
    return prompts


class RunSpec(_Section):
    """Everything the trainer needs to reproduce a run."""

    name: str = Field("", max_length=200, description="A label for the run; empty picks one.")
    method: Literal["lora", "qlora"] = Field("lora", description="'qlora' loads the base in 4 bit.")
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: Annotated[DataSpec, Field(description="Dataset and tokenisation.")]
    lora: LoraSpec = Field(default_factory=LoraSpec)
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    samples: SamplesSpec = Field(default_factory=SamplesSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)

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
    def from_yaml(cls, text: str, limits: safe_yaml.YamlLimits = safe_yaml.YamlLimits()) -> RunSpec:
        """Parse (bounded: safe_yaml.YamlRefused) and validate (pydantic.ValidationError) a YAML spec."""
        return cls.model_validate(safe_yaml.load(text, limits) or {})
