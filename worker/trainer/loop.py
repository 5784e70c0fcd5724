"""train(spec, out_dir, sink, should_stop): one run with transformers.Trainer, reporting through a ReportSink."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.planning.allocator import INSTALL_HINT, active_allocator
from worker.planning.inputs import TrainingInputs
from worker.planning.reports import FinalNumbers, Finished, Log
from worker.planning.spec import RunSpec
from worker.trainer import distributed
from worker.trainer.artifacts import library_versions, save_adapter
from worker.trainer.callbacks import MetricsCallback, StopCallback
from worker.trainer.checkpoint import CheckpointEvents, SafeCheckpoints
from worker.trainer.data import PaddingCollator, run_data
from worker.trainer.errors import TrainerError
from worker.trainer.guard import DivergenceGuard
from worker.trainer.loss import LabelledLossTrainer
from worker.trainer.model import (
    load_model,
    optimizer_name,
    pick_device,
    precision,
    settle_choices,
    supports_bf16,
    varlen_attention,
)
from worker.trainer.onednn import bound_primitive_cache
from worker.trainer.packing import DEFAULT_BREAK_EVEN, PackingCollator, attention_break_even
from worker.trainer.samples import sampling
from worker.trainer.sinks import NullSink, ReportSink
from worker.trainer.tokenizers import load_tokenizer


class StudioTrainer(SafeCheckpoints, LabelledLossTrainer):
    """Loss on the labelled positions only; checkpoints and resumes as plain data (safetensors + JSON)."""


@dataclass
class RunResult:
    """How a run ended and where its adapter is."""

    status: str  # "succeeded" | "cancelled"
    adapter_dir: Path
    train_loss: float | None
    eval_loss: float | None
    steps: int
    tokens_seen: int


def training_arguments(spec: RunSpec, out_dir: Path, device: str, has_eval: bool) -> Any:
    """TrainingArguments from the spec's training section (checkpoints under out_dir/checkpoints)."""
    from transformers import TrainingArguments

    t = spec.training
    eval_strategy = ("steps" if t.eval_steps else "epoch") if has_eval else "no"
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"), optim=optimizer_name(spec, device),
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, num_train_epochs=t.num_epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_batch_size, per_device_eval_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, max_grad_norm=t.max_grad_norm,
        activation_checkpointing=t.gradient_checkpointing, logging_steps=t.logging_steps,
        eval_strategy=eval_strategy, eval_steps=t.eval_steps,
        save_strategy="steps" if t.save_steps else "no", save_steps=t.save_steps or 500,
        seed=t.seed, data_seed=t.seed, use_cpu=device == "cpu",
        # bf16 autocast (fp32 master weights) wherever matmuls are native in bf16, CPUs with AMX included; fp16
        # autocast with a gradient scaler on GPUs without bf16 (the LoRA weights stay fp32, as the scaler needs).
        bf16=precision(device) == "bf16", fp16=precision(device) == "fp16", report_to="none", disable_tqdm=True,
        # Keep NaN/inf in the logs (the default swaps them for the running mean) so the guard sees them.
        logging_nan_inf_filter=False,
        # Both collators give an attention_mask of the real tokens, so tokens_seen never counts padding.
        include_num_input_tokens_seen="non_padding", remove_unused_columns=False,
        # Several processes (resources.gpus, launched by torchrun): every trainable weight takes part in each step.
        ddp_backend=distributed.ddp_backend(device), ddp_find_unused_parameters=False,
    )


def collator(spec: RunSpec, tokenizer: Any, break_even: float = DEFAULT_BREAK_EVEN, varlen: bool = False) -> Any:
    """Packing into rows of at most max_seq_length, or dynamic padding to the longest example of the batch.

    break_even: the row length at which the model's attention costs as much as its linear layers
    (packing.attention_break_even), used to pick each packed batch's row width. varlen: the model's attention
    is FlashAttention-2's varlen kernel, so a packed batch is one flattened row (PackingCollator).
    """
    if spec.data.packing:
        return PackingCollator(spec.data.max_seq_length, tokenizer.pad_token_id, break_even, flatten=varlen)
    return PaddingCollator(tokenizer.pad_token_id)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts (4-bit weights count as stored elements × 2)."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel() * (2 if p.dtype.itemsize == 1 and not p.is_floating_point() else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def _last_eval_step(trainer: Any) -> int | None:
    steps = [e["step"] for e in trainer.state.log_history if "eval_loss" in e]
    return steps[-1] if steps else None


def _final(trainer: Any, metrics: MetricsCallback) -> FinalNumbers:
    """The last logged train and eval losses, steps and tokens."""
    return FinalNumbers(train_loss=metrics.last.get("loss"), eval_loss=metrics.last.get("eval_loss"),
                        steps=int(trainer.state.global_step), tokens_seen=int(trainer.state.num_input_tokens_seen))


def train(spec: RunSpec, out_dir: Path, sink: ReportSink, should_stop: Callable[[], bool] = lambda: False,
          resume_from: Path | None = None, inputs: TrainingInputs | None = None) -> RunResult:
    """Fine-tune spec.model with LoRA/QLoRA on spec.data, save the adapter into out_dir/adapter, and report.

    resume_from: a checkpoint folder of an earlier attempt at this spec; training continues from it exactly.
    inputs: where this machine finds the spec's model and data (default: the spec's own, already local).
    """
    inputs = inputs or TrainingInputs.from_spec(spec)
    from transformers import PrinterCallback, set_seed

    # Under DDP (resources.gpus > 1) rank 0 alone reports, samples and saves; the others only train with it.
    main = distributed.is_main()
    sink = sink if main else NullSink()

    out_dir, device = Path(out_dir), pick_device()
    if spec.method == "lora":  # before the first bf16 matmul builds oneDNN's cache (onednn.py: not for QLoRA)
        bound_primitive_cache()
    set_seed(spec.training.seed)
    # Its "auto" choices fixed once (spec.yaml and the model card keep the spec as given).
    settled, choices = settle_choices(spec, device, inputs.resolved)
    optimizer_name(settled, device)  # fail on a device/optimizer mismatch before loading anything
    sink.emit(Log(message=f"loading tokenizer of {inputs.model_ref}"))
    tokenizer = load_tokenizer(spec, inputs)
    data = run_data(spec, tokenizer, sink, inputs.data_path)
    train_set, eval_set = data.train, data.eval
    stop = StopCallback(should_stop)
    samples = sampling(spec, tokenizer, data.kind, data.held_out, sink, lambda: stop.stopped,
                       supports_bf16(device)) if main else None
    sink.emit(Log(message=f"loading model ({spec.method}) on {device}"))
    model = load_model(settled, device, vocab_size=len(tokenizer), inputs=inputs)
    varlen = varlen_attention(model)
    if varlen:
        sink.emit(Log(message="attention: FlashAttention-2 (varlen), each packed batch flattened into one row"))
    trainable, total = parameter_counts(model)
    break_even = attention_break_even(total, model.config.num_hidden_layers, model.config.hidden_size)
    allocator = active_allocator()
    if device == "cpu" and allocator == "system":
        sink.emit(Log(message="heap allocator: the system malloc; with tcmalloc CPU training ran 10-25 % faster "
                      f"in ~25 % less memory ({INSTALL_HINT})"))
    metrics = MetricsCallback(sink, started={"device": device, "versions": library_versions(), "allocator": allocator,
                                             "trainable_params": trainable, "total_params": total,
                                             "resolved": choices})
    guard = DivergenceGuard(spec.training.divergence_factor)
    trainer = StudioTrainer(
        model=model, args=training_arguments(settled, out_dir, device, bool(eval_set)), train_dataset=train_set,
        eval_dataset=eval_set or None, data_collator=collator(spec, tokenizer, break_even, varlen),
        # Samples first: the base model's answers come before the throughput clock of `metrics` starts.
        processing_class=tokenizer,
        callbacks=[*([samples] if samples else []), metrics, stop, guard, CheckpointEvents(sink)],
    )
    # With tqdm off the Trainer prints every log dict to stdout; our metrics already go to the sink.
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if guard.reason:
        raise TrainerError("diverged", f"Training diverged: {guard.reason}. The adapter was not saved.")
    if eval_set and not stop.stopped and _last_eval_step(trainer) != trainer.state.global_step:
        trainer.evaluate()  # the final eval loss belongs to the final weights
    if samples:
        samples.finish(model, int(trainer.state.global_step), should_stop)
    final = _final(trainer, metrics)
    adapter_dir = save_adapter(model, tokenizer, spec, inputs, out_dir, final) if main else out_dir / "adapter"
    status = "cancelled" if stop.stopped else "succeeded"
    sink.emit(Finished(status=status, final=final))
    return RunResult(status=status, adapter_dir=adapter_dir, **final.model_dump())
