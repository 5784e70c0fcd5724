"""The torch side of benchmarks/gpu_acceptance.py, in fresh processes of its own (so every measurement starts with
an empty device and the orchestrator never holds the GPU):

  python benchmarks/acceptance/work.py prepare  '{…}'   the device (and a timed matmul), the models built, packing
  python benchmarks/acceptance/work.py baseline '{…}'   a plain HF Trainer + PEFT run (the speed comparison)

Each prints one line `RESULT {json}` on stdout. The baseline is benchmarks/throughput_baselines.py's recipe B
(the blog posts' transformers Trainer + PEFT, dynamic padding; for QLoRA NF4 + double quantisation,
prepare_model_for_kbit_training and paged 8-bit AdamW on CUDA), here on any model, device and length.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SEED = 42
# Llama-3.2-1B's architecture (its config.json); the weights are random, so no model hub is needed.
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_position_embeddings": 8192}


def probe(args: dict[str, Any]) -> dict[str, Any]:
    """The device as a worker describes it (worker.trainer.device) and a bf16 (else fp32) matmul's FLOP/s there."""
    import torch

    from worker.trainer.device import describe
    from worker.trainer.model import supports_bf16

    info = describe()
    device = info["kind"]
    dtype = torch.bfloat16 if supports_bf16(device) else torch.float32
    n = 8192 if device == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    repeats, started = (20 if device == "cuda" else 5), time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    seconds = (time.perf_counter() - started) / repeats
    return info | {"matmul_dtype": str(dtype).removeprefix("torch."), "matmul_flops": 2 * n**3 / seconds}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def build(args: dict[str, Any]) -> dict[str, Any]:
    """A random model of `shape` ("llama-1b": Llama-3.2-1B's, in bf16; "tiny": the tests' 2-layer Llama) with the
    tests' fast ChatML tokenizer (tests/support/tiny_model.py), written to `folder`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tests.support.tiny_model import build_tiny_model

    folder = Path(args["folder"])
    if args["shape"] == "tiny":
        build_tiny_model(folder)
        return {"folder": str(folder)}
    with tempfile.TemporaryDirectory() as tmp:  # the tests' tokenizer, built beside a throw-away tiny model
        tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(Path(tmp)))
    config = LlamaConfig(**LLAMA_1B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    where = "cuda" if torch.cuda.is_available() else "cpu"  # initialising 1.2 B weights on a GPU takes a second
    with torch.device(where):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="20GB")
    tokenizer.save_pretrained(folder)
    return {"folder": str(folder), "params": sum(p.numel() for p in model.parameters())}


def chat_examples(tokenizer: Any, rows: Path, max_length: int) -> list[dict[str, list[int]]]:
    """Each canonical chat row rendered by the chat template and tokenised, truncated to max_length, labels = ids
    (loss on every token, as the studio's runs here train with train_on "all")."""
    out = []
    for line in rows.read_text(encoding="utf-8").splitlines():
        text = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False)
        ids = tokenizer(text, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
    return out


def _baseline_model(folder: str, method: str, device: str, bf16: bool) -> Any:
    """The base in bf16 (fp32 without bf16) for LoRA, NF4 for QLoRA, with PEFT's LoRA on every linear layer."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch.bfloat16 if bf16 else torch.float32
    if method == "qlora":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=dtype)
        placement = {"device_map": {"": 0}} if device == "cuda" else {}
        model = prepare_model_for_kbit_training(
            AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, **placement))
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    lora = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
    return get_peft_model(model, lora)


def baseline(args: dict[str, Any]) -> dict[str, Any]:
    """Train `steps` steps with a plain transformers Trainer + PEFT; real tokens, their timings, losses, memory."""
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from transformers import set_seed as seed_everything

    device, method = args["device"], args["method"]
    cuda = device == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    seed_everything(SEED)
    tokenizer = AutoTokenizer.from_pretrained(args["model"])
    if tokenizer.pad_token is None:  # as the blog posts do for tokenizers without one
        tokenizer.pad_token = tokenizer.eos_token
    data = chat_examples(tokenizer, Path(args["rows"]), args["max_length"])
    pad = DataCollatorWithPadding(tokenizer)

    def collate(features: list[dict]) -> dict:  # dynamic padding; labels padded with -100
        width = max(len(f["input_ids"]) for f in features)
        labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
        return pad([{k: f[k] for k in ("input_ids", "attention_mask")} for f in features]) | {"labels": labels}

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.points: list[tuple[float, int]] = []
            self.losses: list[float] = []

        def on_train_begin(self, _args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_log(self, _args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))
                self.points.append((time.monotonic() - self.started, int(state.num_input_tokens_seen)))

    with tempfile.TemporaryDirectory() as out:
        train_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args["batch"], max_steps=args["steps"],
            learning_rate=args["lr"], lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, seed=SEED,
            data_seed=SEED, use_cpu=not cuda, bf16=bf16, report_to="none", save_strategy="no", disable_tqdm=True,
            remove_unused_columns=False, include_num_input_tokens_seen="non_padding",
            **({"optim": "paged_adamw_8bit"} if method == "qlora" and cuda else {}))
        clock = Clock()
        trainer = Trainer(model=_baseline_model(args["model"], method, device, bf16), args=train_args,
                          train_dataset=data, data_collator=collate, callbacks=[clock])
        runtime = trainer.train().metrics["train_runtime"]
    tokens = int(trainer.state.num_input_tokens_seen)
    memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokens": tokens, "seconds": runtime, "points": clock.points, "losses": clock.losses,
            "memory_mb": memory}


def _loss_sum(model: Any, batch: dict) -> Any:
    """Sum of the per-token losses, whatever the layout of the batch (tests/trainer/test_packing.py's)."""
    import torch

    from worker.trainer.data import IGNORE_INDEX
    from worker.trainer.loss import model_inputs

    logits = model(**model_inputs(batch)).logits.float()
    labels = batch["labels"]
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                             ignore_index=IGNORE_INDEX, reduction="sum")


def _layouts(model: Any, batches: dict[str, dict]) -> dict[str, tuple[float, Any]]:
    """Loss and embedding gradient of each batch layout."""
    import torch

    weight = model.get_input_embeddings().weight
    out = {}
    for name, batch in batches.items():
        loss = _loss_sum(model, {k: v.to(weight.device) if torch.is_tensor(v) else v for k, v in batch.items()})
        out[name] = (loss.item(), torch.autograd.grad(loss, weight)[0].float())
    return out


def _packing_examples(tokenizer: Any, rows: Path, max_length: int) -> list[dict[str, list[int]]]:
    """One example as long as a row may be and seven of at most a quarter of it, the first half of each without
    loss: the long one gets a row of its own, the short ones share rows (so boundaries and a padding segment are
    tested)."""
    short = chat_examples(tokenizer, rows, max_length // 4)[:7]
    long = max(chat_examples(tokenizer, rows, max_length)[:32], key=lambda e: len(e["input_ids"]))
    return [{"input_ids": e["input_ids"], "labels": [-100] * (len(e["labels"]) // 2) + e["labels"][
        len(e["labels"]) // 2:]} for e in [long, *short]]


def packing(args: dict[str, Any]) -> dict[str, Any]:
    """The same examples padded and packed (worker.trainer's own collators) through the model as the trainer loads
    it on the device, its default attention (sdpa): relative differences of the loss and the embedding gradient,
    in fp32 and in bf16 where the device trains in it. "unmasked" packs the rows without restarting positions (so
    attention crosses examples): how far off a broken packing would be, to show the check can tell."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from worker.trainer.data import PaddingCollator
    from worker.trainer.model import supports_bf16
    from worker.trainer.packing import PackingCollator

    device = args["device"]
    tokenizer = AutoTokenizer.from_pretrained(args["model"])
    examples = _packing_examples(tokenizer, Path(args["rows"]), args["max_length"])
    packed = PackingCollator(args["max_length"], tokenizer.pad_token_id)(examples)
    batches = {"padded": PaddingCollator(tokenizer.pad_token_id)(examples), "packed": packed,
               "unmasked": {"input_ids": packed["input_ids"], "labels": packed["labels"], "use_cache": False}}
    model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32).to(device)
    result: dict[str, Any] = {"attention": model.config._attn_implementation, "examples": len(examples),
                              "packed_rows": int(packed["input_ids"].shape[0]),
                              "packed_width": int(packed["input_ids"].shape[1])}
    fp32 = _layouts(model, batches)
    result["fp32"] = _differences(fp32, fp32["padded"])
    if supports_bf16(device):
        result["bf16"] = _differences(_layouts(model.to(torch.bfloat16), batches), fp32["padded"])
    return result


def _differences(layouts: dict[str, tuple[float, Any]], reference: tuple[float, Any]) -> dict[str, float]:
    """Relative |loss| and ‖gradient‖ differences of packed and unmasked against padded, and of padded in this
    precision against padded in fp32 (the rounding noise of the precision itself)."""
    def rel(a: tuple[float, Any], b: tuple[float, Any]) -> tuple[float, float]:
        return abs(a[0] - b[0]) / abs(b[0]), ((a[1] - b[1]).norm() / b[1].norm()).item()

    padded = layouts["padded"]
    (loss, grad), (loss_u, grad_u), (loss_n, grad_n) = (rel(layouts["packed"], padded),
                                                        rel(layouts["unmasked"], padded), rel(padded, reference))
    return {"loss_diff": loss, "grad_diff": grad, "unmasked_loss_diff": loss_u, "unmasked_grad_diff": grad_u,
            "noise_loss": loss_n, "noise_grad": grad_n, "loss": padded[0]}


def prepare(args: dict[str, Any]) -> dict[str, Any]:
    """The probe, then each model of args["build"] built, then the packing check on args["packing"]["model"]; a
    failed build or packing is reported as its error (a missing device fails the whole piece)."""
    import torch

    found: dict[str, Any] = {"device": probe(args), "built": {}}
    for model in args.get("build", []):
        found["built"][model["folder"]] = _attempt(build, model)
    if args.get("packing"):
        torch.cuda.empty_cache()  # the built model is gone: the check starts on an empty device
        found["packing"] = _attempt(packing, args["packing"] | {"device": found["device"]["kind"]})
    return found


def _attempt(step: Any, args: dict[str, Any]) -> dict[str, Any]:
    """step(args), or {"error": the exception and the end of its traceback}."""
    import traceback

    try:
        return step(args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-1500:]}


PIECES = {"prepare": prepare, "baseline": baseline}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in PIECES:
        raise SystemExit(__doc__)
    print("RESULT " + json.dumps(PIECES[sys.argv[1]](json.loads(sys.argv[2]))), flush=True)
