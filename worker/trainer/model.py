"""Small pure factories from a RunSpec to library objects: quantisation, LoRA config, tokenizer, model, optimizer."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from worker.planning.device_profiles import cpu_has_native_bf16
from worker.planning.inputs import TrainingInputs
from worker.planning.spec import CUDA_ONLY_OPTIMIZERS, RunSpec
from worker.trainer import distributed
from worker.trainer.document_attention import use_document_attention
from worker.trainer.dropout import use_lean_dropout
from worker.trainer.errors import TrainerError
from worker.trainer.lean_blocks import use_lean_blocks
from worker.trainer.lora_fusion import fuse_lora_forward
from worker.trainer.stacked_projections import stack_frozen_projections
from worker.trainer.tokenizers import source_kwargs

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


def pick_device() -> str:
    """CUDA when there is a GPU, else the CPU — unless the worker was started for one device (device_choice)."""
    from worker.trainer.device_choice import DeviceUnavailable
    from worker.trainer.device_choice import pick_device as choose

    try:
        return choose()
    except DeviceUnavailable as exc:
        raise TrainerError("device_unavailable", str(exc)) from None


def supports_bf16(device: str) -> bool:
    """Whether bfloat16 matmuls are native here (Ampere+ GPUs, CPUs with AVX512-BF16/AMX)."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
    return torch.backends.mkldnn.is_available() and cpu_has_native_bf16()


def precision(device: str) -> str:
    """How the trainer runs its matmuls here: "bf16" autocast where bf16 is native (Ampere+ GPUs, CPUs with
    AVX512-BF16/AMX); on older GPUs (T4, V100) "fp16" autocast with gradient scaling, the usual recipe there and
    4-8x faster than fp32; else "fp32"."""
    if supports_bf16(device):
        return "bf16"
    return "fp16" if device == "cuda" else "fp32"


def compute_dtype(spec: RunSpec, device: str) -> torch.dtype:
    """The matmul dtype of the 4-bit layers: the spec's choice, or for "auto" the one the trainer's autocast uses
    here (precision)."""
    choice = spec.quantization.compute_dtype
    if choice == "auto":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision(device), torch.float32)
    if choice == "bfloat16" and device == "cuda" and not supports_bf16(device):
        # Before Ampere (T4, V100) a GPU has no bf16 matmuls: refused, not run at a fraction of the speed or failed
        # deep inside a kernel.
        raise TrainerError("bf16_unsupported", f"quantization.compute_dtype is bfloat16, but this GPU "
                           f"({torch.cuda.get_device_name()}) has no bfloat16 matmuls (they need compute capability "
                           "8.0, Ampere or newer): set it to auto or float16.")
    return _DTYPES[choice]


def quantization_config(spec: RunSpec, device: str) -> Any:
    """BitsAndBytesConfig for a 4-bit base (QLoRA)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.quantization.quant_type,
        bnb_4bit_use_double_quant=spec.quantization.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(spec, device),
    )


def peft_config(spec: RunSpec) -> Any:
    """LoraConfig for a causal LM from the spec's lora section."""
    from peft import LoraConfig, TaskType

    lora = spec.lora
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.resolved_targets(), bias=lora.bias, use_rslora=lora.use_rslora, use_dora=lora.use_dora,
    )


def settle_choices(spec: RunSpec, device: str, pinned: Mapping[str, str]) -> tuple[RunSpec, dict[str, str]]:
    """The spec with its "auto" optimizer and compute dtype fixed, and what they became: as an earlier attempt of the
    run fixed them (pinned, stored by the studio), else for this device. A resumed attempt so never meets a
    checkpoint written with another optimizer, whichever worker it lands on."""
    optimizer = spec.training.optimizer
    if optimizer == "auto":
        optimizer = pinned.get("optimizer") or optimizer_name(spec, device)
    changes: dict[str, Any] = {"training": spec.training.model_copy(update={"optimizer": optimizer})}
    choices = {"optimizer": optimizer}
    if spec.method == "qlora":
        dtype = spec.quantization.compute_dtype
        if dtype == "auto":
            dtype = pinned.get("compute_dtype") or _DTYPE_NAMES[compute_dtype(spec, device)]
        changes["quantization"] = spec.quantization.model_copy(update={"compute_dtype": dtype})
        choices["compute_dtype"] = dtype
    return spec.model_copy(update=changes), choices


def optimizer_name(spec: RunSpec, device: str) -> str:
    """The transformers `optim` name: "auto" resolves per method and device; CUDA-only choices fail on CPU."""
    choice = spec.training.optimizer
    if choice == "auto":
        return "paged_adamw_8bit" if spec.method == "qlora" and device == "cuda" else "adamw_torch"
    if choice in CUDA_ONLY_OPTIMIZERS and device != "cuda":
        raise TrainerError(
            "unsupported_on_device",
            f"The optimizer {choice!r} needs a CUDA GPU but this run is on the {device}; "
            "pick training.optimizer 'adamw_torch' (or 'auto').",
        )
    return choice


def disable_cpu_weight_repacking(model: torch.nn.Module) -> int:
    """Stop bitsandbytes repacking 4-bit weights into its CPU inference layout; returns the layers changed.

    On CPUs with AVX512-BF16, Linear4bit.forward in eval mode with an input that needs no grad rewrites
    the weight into a packed layout for fast inference, and gradients through it are wrong from then on:
    one evaluation or generation pass and QLoRA stops learning. Training must keep the plain layout.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def _require_safetensors(ref: str) -> None:
    """Refuse a local folder whose weights are only pickles, with a message that says what to do."""
    folder = Path(ref).expanduser()
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        raise TrainerError("unsafe_weights", f"{folder} has no .safetensors weights; the studio never loads "
                           ".bin/.pt pickles. Convert the model to safetensors in a trusted environment.")


def _autocast_output(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    """A layer's output in the autocast dtype when autocast is on (4-bit linears and norms return fp32)."""
    kind = output.device.type
    if torch.is_autocast_enabled(kind) and output.is_floating_point():
        return output.to(torch.get_autocast_dtype(kind))
    return output


def autocast_4bit_outputs(model: torch.nn.Module) -> int:
    """Make 4-bit layers give autocast-dtype outputs, as nn.Linear does under autocast; returns the layers hooked.

    bitsandbytes multiplies in the compute dtype (bf16) and casts the result back to its input's dtype, fp32
    after prepare_model_for_kbit_training: the MLP's gate, up and SiLU then run and are saved for backward in
    fp32, twice what LoRA saves under autocast. The values are bf16-exact either way, so casting them back
    down changes no number.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.register_forward_hook(_autocast_output)
    return len(layers)


def autocast_norm_outputs(model: torch.nn.Module) -> int:
    """Make the decoder's norms give autocast-dtype outputs under autocast; returns the norms hooked.

    A norm's output stays fp32 when the residual stream is fp32 (fp32 models, or norms upcast for QLoRA), and
    autocast then rounds it to bf16 again for each linear that reads it, q, k, v and their three LoRA paths,
    each rounded copy also saved for backward. Rounding once at the norm gives the same matmul inputs, saves
    one copy, and lets LoRA dropout work on half the bytes. The residual stream itself stays fp32.
    """
    norms = [m for m in model.get_decoder().modules() if type(m).__name__.endswith("Norm")]
    for norm in norms:
        norm.register_forward_hook(_autocast_output)
    return len(norms)


def _autocast_pair(module: torch.nn.Module, args: Any, output: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(_autocast_output(module, args, t) for t in output)


def autocast_rotary_outputs(model: torch.nn.Module) -> int:
    """Make the rotary embedding give cos and sin in the autocast dtype under autocast; returns the modules hooked.

    They come in the residual stream's dtype, fp32 here, and q·cos then promotes the bf16 queries and keys to fp32:
    twice the bytes through RoPE, and a rounding back to bf16 in attention. A bf16 model (the baselines) ropes in
    bf16 as this does.
    """
    rotary = [m for m in model.get_decoder().modules() if type(m).__name__.endswith("RotaryEmbedding")]
    for module in rotary:
        module.register_forward_hook(_autocast_pair)
    return len(rotary)


def _base_model(spec: RunSpec, device: str, inputs: TrainingInputs) -> Any:
    """The frozen base: 4-bit for QLoRA, else full precision (on a GPU in its autocast dtype, bf16 or fp16: the
    frozen weights are only ever read as that)."""
    from transformers import AutoModelForCausalLM

    kwargs = source_kwargs(spec, inputs)
    target = distributed.rank_device(device)  # under DDP each rank's own GPU
    if not inputs.gguf_file:
        # Never unpickle weights: .bin/.pt files can run code when loaded. (GGUF holds no pickles.)
        kwargs["use_safetensors"] = True
        _require_safetensors(inputs.model_ref)
    if (attention := attention_implementation(device)) is not None:
        kwargs["attn_implementation"] = attention
    if spec.method == "qlora":
        kwargs["quantization_config"] = quantization_config(spec, device)
        if device != "cpu":
            # On the CPU the model loads in place; a device_map there only adds accelerate's dispatch
            # bookkeeping and kept ~0.3 GB more resident in the benchmark.
            kwargs["device_map"] = {"": target}
    else:
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision(device))
        kwargs["dtype"] = half if device == "cuda" and half else torch.float32
        if device == "cuda":  # straight onto the GPU: not the whole base in host memory first, then copied
            kwargs["device_map"] = {"": target}
    model = AutoModelForCausalLM.from_pretrained(inputs.model_ref, **kwargs)
    if spec.method == "qlora":
        return model
    if device == "cpu" and supports_bf16(device):
        bf16_block_linears(model)
    elif device == "cpu":
        # Own memory for the weights before stack_frozen_projections copies some: else the checkpoint's mapped
        # pages stay resident beside those copies for as long as any tensor still reads the file (+279 MB).
        release_checkpoint_pages(model)
    return model.to(target)


def attention_implementation(device: str) -> str | None:
    """FlashAttention-2 where it is installed and can run (a CUDA GPU training in bf16 or fp16): packed rows then go
    through its varlen kernel, with no O(L²) mask; else None, transformers' default (sdpa)."""
    if device != "cuda" or precision(device) not in ("bf16", "fp16"):
        return None
    return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else None


def varlen_attention(model: Any) -> bool:
    """Whether the model attends with FlashAttention-2 (its packed batches must be one flattened row)."""
    return getattr(model.config, "_attn_implementation", None) == "flash_attention_2"


def bf16_block_linears(model: torch.nn.Module) -> int:
    """Store the frozen linear weights of the decoder blocks in bf16 on a CPU that trains under bf16 autocast.

    Autocast rounds each fp32 weight to bf16 at every matmul and keeps that copy for backward, so storing
    them in bf16 changes no result: it halves their memory and drops the per-step casts. Norms, embeddings
    and the head stay fp32 (the loss casts the head itself), as do the LoRA weights added later.
    """
    layers = [m for m in model.get_decoder().modules() if isinstance(m, torch.nn.Linear)]
    for layer in layers:
        layer.to(torch.bfloat16)
    release_checkpoint_pages(model)
    return len(layers)


def release_checkpoint_pages(model: torch.nn.Module) -> None:
    """Copy the fp32 tensors still backed by the memory-mapped checkpoint into memory of their own.

    While one tensor (the embeddings, a norm) points into the mapping, every page of the file that loading
    read stays resident: the fp32 originals of the weights that were converted to bf16 or quantised to 4 bits.
    On SmolLM2 QLoRA that was 405 MB of the file kept beside the 4-bit copies.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dtype == torch.float32:
            tensor.data = tensor.data.clone()


def load_model(spec: RunSpec, device: str, vocab_size: int | None = None, inputs: TrainingInputs | None = None) -> Any:
    """The base model wrapped with fresh LoRA adapters (kept in fp32), ready for training on `device`."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = _base_model(spec, device, inputs or TrainingInputs.from_spec(spec))
    if vocab_size and vocab_size > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(vocab_size)  # e.g. ChatML markers added to a template-less tokenizer
    if device == "cpu":
        use_document_attention(model)  # packed rows attend per example, without SDPA's O(L²) mask
        use_lean_blocks(model)  # SiLU·up and RMS norms that save fewer activations for backward
    if spec.method == "qlora":
        # Upcasts norms and embeddings to fp32 and enables input grads, as QLoRA training expects.
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec.training.gradient_checkpointing
        )
        disable_cpu_weight_repacking(model)
        autocast_4bit_outputs(model)
        release_checkpoint_pages(model)
    elif spec.training.gradient_checkpointing:
        model.enable_input_require_grads()
    autocast_norm_outputs(model)
    autocast_rotary_outputs(model)
    model = get_peft_model(model, peft_config(spec), autocast_adapter_dtype=True)
    use_lean_dropout(model)  # a faster mask on the CPU, and a boolean mask saved instead of a float one
    fuse_lora_forward(model)  # one dropout and A matmul per shared input (q/k/v, gate/up); B, scale and add in one
    if device == "cpu":
        stack_frozen_projections(model)  # one wider matmul for the frozen q/k/v and gate/up weights
    return model
