"""The recipes the studio's trainer is measured against (benchmarks/training_throughput.py), each as a person would
write it from the libraries' own documentation:

  A  the seed recipe: HF Trainer + PEFT, fp32 base, every row padded to the maximum length (QLoRA: NF4, double
     quantization, bf16 compute, prepare_model_for_kbit_training with its gradient checkpointing);
  B  A with dynamic padding (each batch padded to its longest row);
  P  the strongest plain recipe: HF Trainer + PEFT, a bf16 base (QLoRA: NF4 with bf16 compute and the rest in bf16,
     no gradient checkpointing), bf16 autocast, padding-free batches (transformers' DataCollatorWithFlattening);
  T  TRL's SFTTrainer with packing (best-fit decreasing, which makes it padding-free), a bf16 base, bf16 autocast.

bf16 is the strongest choice only on a CPU that multiplies it natively (AVX512-BF16 or AMX). On one that does not
(an AVX2-only EPYC, say) oneDNN emulates it: a 2048² bf16 matmul measured 0.26 GFLOP/s against 140 in fp32, so
P and T there train in fp32 (the recipe a competent user would run on it), and every QLoRA recipe computes its
4-bit matmuls in fp32 (half_precision()).

Every recipe trains the same rows (the chat template over the whole conversation, loss on every token, as the
studio's train_on: all) with the same LoRA settings, learning rate, schedule and seed, one epoch; each returns its
real tokens (never padding), seconds, CPU seconds and per-step losses.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

BASELINES = ("A", "B", "P", "T")
HALF_PRECISION = ("P", "T")  # the recipes that train in bf16 where this CPU multiplies bf16 natively
SEED_RECIPES = ("A", "B")  # fp32, and QLoRA with prepare_model_for_kbit_training's gradient checkpointing
LR, SEED = 2e-4, 42


def half_precision() -> bool:
    """Whether this CPU multiplies bf16 natively: where it does not, bf16 is emulated hundreds of times slower than
    fp32, and no recipe is run in it (see the module's docstring)."""
    from worker.planning.device_profiles import cpu_has_native_bf16

    return cpu_has_native_bf16()


def runs_in_bf16(name: str) -> bool:
    """Whether recipe `name` (BASELINES) trains in bf16 on this CPU."""
    return name in HALF_PRECISION and half_precision()


def cpu_seconds() -> float:
    """CPU time of this process (user + system): unlike wall time, barely moved by other processes on the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def conversations(rows: Path) -> list[list[dict[str, str]]]:
    """The rows' messages (the studio's canonical JSONL)."""
    return [json.loads(line)["messages"] for line in rows.read_text(encoding="utf-8").splitlines()]


def tokenized(tokenizer, rows: Path, max_len: int, pad_to_max: bool) -> list[dict]:  # noqa: ANN001
    """The chat template over each conversation, truncated to max_len; labels = ids (padding masked)."""
    out = []
    for messages in conversations(rows):
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        enc = tokenizer(text, truncation=True, max_length=max_len,
                        padding="max_length" if pad_to_max else False, add_special_tokens=False)
        labels = [t if m else -100 for t, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    return out


def peft_model(model_dir: Path, method: str, lora: dict[str, Any], bf16: bool, seed: bool):  # noqa: ANN201
    """The base (NF4 for QLoRA) with LoRA adapters. The seed recipe (A, B): fp32, QLoRA through
    prepare_model_for_kbit_training (which turns gradient checkpointing on), as the blog posts do. The strong
    recipes (P, T): the base in bf16 where this CPU has it (else fp32), nothing upcast, no gradient checkpointing
    (PEFT still keeps the adapters in fp32)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch.bfloat16 if bf16 else torch.float32
    if method == "qlora":
        compute = torch.bfloat16 if half_precision() else torch.float32  # never emulated bf16 (module docstring)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=compute)
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=dtype)
        if seed:
            model = prepare_model_for_kbit_training(model)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    config = LoraConfig(task_type="CAUSAL_LM", r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=lora["target_modules"])
    return get_peft_model(model, config)


def trainer_args(out: Path, batch: int, accum: int, bf16: bool) -> dict[str, Any]:
    """TrainingArguments shared by every recipe."""
    return {"output_dir": str(out), "per_device_train_batch_size": batch, "gradient_accumulation_steps": accum,
            "num_train_epochs": 1, "learning_rate": LR, "lr_scheduler_type": "cosine", "warmup_steps": 0.03,
            "logging_steps": 1, "seed": SEED, "data_seed": SEED, "use_cpu": True, "report_to": "none",
            "save_strategy": "no", "disable_tqdm": True, "bf16": bf16}


def run_baseline(name: str, method: str, model_dir: Path, rows: Path, lora: dict[str, Any], max_len: int,
                 batch: int, accum: int, out: Path) -> dict[str, Any]:
    """Train one recipe (BASELINES) once; its real tokens, seconds, CPU seconds and per-step losses."""
    if name == "T":
        return _run_trl(method, model_dir, rows, lora, max_len, batch, accum, out)
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorWithFlattening,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = tokenized(tokenizer, rows, max_len, pad_to_max=name == "A")
    tokens = sum(sum(row["attention_mask"]) for row in data)
    if name == "P":
        collate = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
        data = [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in data]
    else:
        pad = DataCollatorWithPadding(tokenizer)

        def collate(features: list[dict]) -> dict:  # dynamic padding (A's rows are all max_len already)
            width = max(len(f["input_ids"]) for f in features)
            labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
            return pad([{k: f[k] for k in ("input_ids", "attention_mask")} for f in features]) | {"labels": labels}

    bf16 = runs_in_bf16(name)
    args = TrainingArguments(**trainer_args(out, batch, accum, bf16), remove_unused_columns=False)
    model = peft_model(model_dir, method, lora, bf16, seed=name in SEED_RECIPES)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
    return _timed(trainer, tokens)


def _run_trl(method: str, model_dir: Path, rows: Path, lora: dict[str, Any], max_len: int, batch: int,
             accum: int, out: Path) -> dict[str, Any]:
    """Recipe T. Packing counts per_device_train_batch_size in packed sequences of max_len tokens, so its steps
    hold more rows than the others' (tokens/s is what compares); it needs `pip install '.[bench]'` (trl)."""
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bf16 = runs_in_bf16("T")
    config = SFTConfig(**trainer_args(out, batch, accum, bf16=bf16), max_length=max_len, packing=True,
                       packing_strategy="bfd", completion_only_loss=False, assistant_only_loss=False)
    data = Dataset.from_list([{"messages": messages} for messages in conversations(rows)])
    model = peft_model(model_dir, method, lora, bf16, seed=False)
    trainer = SFTTrainer(model=model, args=config, train_dataset=data,
                         processing_class=tokenizer)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return _timed(trainer, tokens)


def _timed(trainer, tokens: int) -> dict[str, Any]:  # noqa: ANN001
    cpu = cpu_seconds()
    runtime = trainer.train().metrics["train_runtime"]
    cpu = cpu_seconds() - cpu
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"tokens": tokens, "seconds": runtime, "cpu_s": cpu, "losses": losses}
