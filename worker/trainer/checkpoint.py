"""Checkpoints a run resumes from exactly: adapter, optimizer, scheduler, RNG states and data position.

Written as safetensors + JSON only (transformers' own checkpoints pickle the optimizer, scheduler, RNG and
arguments, and loading a pickle runs code), into a temporary folder that is fsync'd and renamed into place, so
a folder named step-NNNNNN is always whole. Its checkpoint.json lists every file with its sha256, and a folder
that does not match its list is never resumed from.

Resuming reuses transformers.Trainer's own path (it skips the batches already seen in the seeded sampler's
order and restores the RNG after that skip); the mixin below only swaps the pickle readers and writers for these.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from worker.planning import manifest
from worker.planning.manifest import MANIFEST
from worker.planning.reports import Checkpoint as CheckpointReport
from worker.trainer import distributed, state_codec
from worker.trainer.errors import TrainerError
from worker.trainer.sinks import ReportSink

ADAPTER_WEIGHTS = "adapter_model.safetensors"
TRAINER_STATE = "trainer_state.json"
KEEP_LOCAL = 2  # on disk; the studio keeps its own copy of the newest in the database
# What must match between the run that wrote a checkpoint and the one resuming from it: else the data order
# differs, or the optimizer state is another optimizer's (a QLoRA run's paged 8-bit AdamW on CUDA, say).
POSITION_KEYS = ("train_examples", "batch_size", "gradient_accumulation_steps", "max_steps", "num_epochs", "seed",
                 "optimizer", "processes")


def folder_name(step: int) -> str:
    """The checkpoint folder of a step: step-000040 (sorts by step)."""
    return f"step-{step:06d}"


def rng_name(rank: int) -> str:
    """The file name (before .json) of one rank's RNG state: "rng" for rank 0, as a one-process run writes it."""
    return "rng" if rank == 0 else f"rng-rank{rank}"


def rng_state() -> dict[str, Any]:
    """Every random generator training draws from: Python, NumPy, torch CPU and the current CUDA device."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.random.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put every generator back where rng_state() found it."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.random.set_rng_state(state["cuda"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(root: Path, step: int, fill: Callable[[Path], None], position: dict[str, Any]) -> Path:
    """Have fill() write a checkpoint's files, add the manifest, and move the folder into place whole."""
    final = root / folder_name(step)
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        try:
            content = manifest.describe(tmp, step, position)
        except manifest.ManifestMismatch as exc:
            raise TrainerError("internal_error", f"Cannot write the checkpoint: {exc}.") from None
        (tmp / MANIFEST).write_text(json.dumps(content, indent=1), encoding="utf-8")
        for path in [*files, tmp / MANIFEST, tmp]:
            _fsync(path)
        shutil.rmtree(final, ignore_errors=True)  # the same step from an earlier try of this process
        tmp.rename(final)
        _fsync(root)  # the rename itself is durable only once the folder holding it is synced
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def verify(folder: Path) -> dict[str, Any]:
    """The manifest of a whole, plain-data checkpoint folder; a TrainerError for anything else."""
    try:
        return manifest.check(folder)
    except manifest.ManifestMismatch as exc:
        raise TrainerError("checkpoint_invalid", f"The checkpoint {folder} cannot be resumed from: {exc}.") from None


def prune(root: Path, keep: int = KEEP_LOCAL) -> None:
    """Delete all but the newest `keep` checkpoint folders under root (and leftovers of interrupted writes)."""
    folders = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in folders[:-keep] + [p for p in root.glob(".tmp-step-*") if p.is_dir()]:
        shutil.rmtree(old, ignore_errors=True)


def check_position(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume when the data order would differ from the run that wrote the checkpoint."""
    differ = [f"{k} {saved.get(k)} → {current.get(k)}" for k in POSITION_KEYS if saved.get(k) != current.get(k)]
    if differ:
        raise TrainerError("checkpoint_mismatch", "The checkpoint was written by a run with other data or "
                           f"settings ({', '.join(differ)}); it cannot continue this one.")


class SafeCheckpoints:
    """transformers.Trainer mixin: checkpoints and resumes through the plain-data format above.

    Put it first among the bases; it replaces the Trainer's pickle-based save and load methods.
    """

    def train(self, resume_from_checkpoint: str | None = None, **kwargs: Any) -> Any:
        """Trainer.train, after checking that the checkpoint is whole and fits this run's data and settings."""
        if resume_from_checkpoint is not None:
            check_position(verify(Path(resume_from_checkpoint))["position"], self.data_position())
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def data_position(self) -> dict[str, Any]:
        """What fixes the order of the batches: with the step, where in which epoch training is."""
        args = self.args
        position = {"step": int(self.state.global_step), "epoch": self.state.epoch,
                    "train_examples": len(self.train_dataset), "batch_size": self._train_batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps, "max_steps": args.max_steps,
                    "num_epochs": args.num_train_epochs, "seed": args.seed,
                    "optimizer": getattr(args.optim, "value", args.optim)}
        if distributed.world_size() > 1:  # each rank reads its own share of every batch: the count fixes the order
            position["processes"] = distributed.world_size()
        return position

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        state = self.state
        if state.global_step >= state.max_steps:
            return  # the adapter is saved right after the last step; a checkpoint there would only cost time
        self.store_flos()  # a collective under DDP: every rank calls it
        # Every rank's generators (they part once a rank draws more than the others: rank 0 alone samples), gathered
        # to rank 0, which alone writes the folder; the others wait for it, so no rank runs ahead into the next
        # steps while the checkpoint is incomplete.
        rng_states = distributed.gather_to_main(rng_state())
        if distributed.is_main():
            root = Path(self.args.output_dir)
            try:
                write(root, state.global_step, partial(self._write_state, rng_states=rng_states),
                      self.data_position())
            except TrainerError:
                raise
            except Exception as exc:  # a full disk, a lost mount: the run ends with the reason, earlier ones stay
                raise TrainerError("checkpoint_save_failed", f"Could not write the checkpoint of step "
                                   f"{state.global_step} under {root}: {exc}") from exc
            prune(root)
        distributed.barrier()

    def _write_state(self, folder: Path, rng_states: list[dict[str, Any]]) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)
        (folder / "README.md").unlink(missing_ok=True)  # PEFT's generic card; not part of the state
        state_codec.save(self.optimizer.state_dict(), folder, "optimizer")
        state_codec.save(self.lr_scheduler.state_dict(), folder, "scheduler")
        if getattr(self.accelerator, "scaler", None) is not None:
            state_codec.save(self.accelerator.scaler.state_dict(), folder, "scaler")
        for rank, rng in enumerate(rng_states):
            state_codec.save(rng, folder, rng_name(rank))
        # As Trainer._save_checkpoint does: stateful callbacks (and the control flags) travel in the state.
        for callback in [*self.callback_handler.callbacks, self.control]:
            if isinstance(callback, ExportableState):
                self.state.stateful_callbacks[callback.__class__.__name__] = callback.state()
        self.state.save_to_json(str(folder / TRAINER_STATE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(Path(resume_from_checkpoint) / ADAPTER_WEIGHTS)
        result = set_peft_model_state_dict(model or self.model, weights)
        if result.unexpected_keys:
            raise TrainerError("checkpoint_mismatch", f"The checkpoint's adapter does not fit this run's model "
                               f"(unexpected weights such as {result.unexpected_keys[0]}).")

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            self.optimizer.load_state_dict(state_codec.load(Path(checkpoint), "optimizer"))
            self.lr_scheduler.load_state_dict(state_codec.load(Path(checkpoint), "scheduler"))

    def _load_scaler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and (Path(checkpoint) / "scaler.json").is_file():
            self.accelerator.scaler.load_state_dict(state_codec.load(Path(checkpoint), "scaler"))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        name = rng_name(distributed.rank())
        if not (Path(checkpoint) / f"{name}.json").is_file():  # the position check refuses this first; kept safe
            raise TrainerError("checkpoint_mismatch", f"The checkpoint has no random state for process "
                               f"{distributed.rank()}: it was written by a run on fewer processes.")
        restore_rng(state_codec.load(Path(checkpoint), name))


class CheckpointEvents(TrainerCallback):
    """Reports each checkpoint written ("checkpoint" event with its step and folder) once it is whole."""

    def __init__(self, sink: ReportSink) -> None:
        self.sink = sink

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / folder_name(state.global_step)
        if folder.is_dir():
            self.sink.emit(CheckpointReport(step=int(state.global_step), path=str(folder)))
