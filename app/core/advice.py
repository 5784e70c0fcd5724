"""What a person can do about each failure code the trainer or the job runner reports."""

from __future__ import annotations

ADVICE: dict[str, str] = {
    "unsupported_on_device": "Choose an option this worker's device supports (training.optimizer 'auto').",
    "no_trainable_tokens": "Raise data.max_seq_length, or check that the examples have assistant turns / completions.",
    "empty_dataset": "Upload a dataset with at least one example.",
    "bad_dataset": "Re-upload the dataset; the studio validates every row on upload.",
    "model_not_found": "Check the registered model's folder or hub id on the Models page.",
    "prepare_failed": "The worker could not prepare the run's files; check the worker's disk space and database.",
    "trainer_crashed": "Often out of memory: try QLoRA, a smaller batch, shorter sequences or gradient "
    "checkpointing. The traceback tail shows the cause.",
    "unsafe_weights": "Save the model with safetensors (save_pretrained in a trusted environment) and register "
    "that folder; pickle-based .bin/.pt weights are never loaded.",
    "diverged": "Lower training.learning_rate (try 10× lower) or raise warm-up, keep gradient clipping on "
    "(training.max_grad_norm 1.0), and check the data for empty, duplicated or garbled examples with the dataset "
    "doctor.",
    "worker_lost": "The run was retried from its newest checkpoint and its worker died every time. Check the "
    "worker's log and memory (the kernel's out-of-memory killer ends a process without a trace): try QLoRA, a "
    "smaller batch or shorter sequences, then clone the run.",
    "checkpoint_save_failed": "Free disk space on the worker (its work folder) or in the database, or check the "
    "database's health, then clone the run; the previous checkpoint is kept whole.",
    "adapter_save_failed": "Free disk space on the worker (its work folder) or in the database, or check the "
    "database's health, then clone the run; the newest checkpoint is kept whole.",
    "checkpoint_invalid": "The stored checkpoint is damaged; clone the run to start it over.",
    "checkpoint_mismatch": "The checkpoint belongs to other data or settings; clone the run to start it over.",
    "device_unavailable": "This worker was started for a GPU it cannot use (the message says why: no driver, a "
    "driver too old for torch's CUDA, a CPU-only torch). Fix that worker, or let the run go to another: it is not "
    "trained on the CPU in silence.",
    "bf16_unsupported": "This GPU has no bfloat16 (before Ampere): clone the run with quantization.compute_dtype "
    "auto or float16.",
    "internal_error": "An unexpected error; the traceback tail shows where. Please report it with the run's spec.",
}


def advice_for(code: str | None) -> str:
    """The advice for a failure code, or a general hint."""
    return ADVICE.get(code or "", "See the error message and the traceback tail.")
