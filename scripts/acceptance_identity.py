"""Acceptance on a real model: QLoRA on SmolLM2-135M-Instruct with identity.json, through the studio's HTTP API.

Usage (a studio running with the demo model registered: `lorastudio up`, `lorastudio demo-model`, and an API
token: `export LORASTUDIO_TOKEN=$(lorastudio tokens create admin)`):
    python scripts/acceptance_identity.py --server http://127.0.0.1:8000 --name Nova --author "Orbit Labs"
Prints wall time, tokens/s, first and final loss, and the answers of the base model and the adapter.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

IDENTITY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "identity.json"
QUESTIONS = ["Who are you?", "What is your name?", "Who created you?"]


def identity_file(name: str, author: str, folder: Path) -> Path:
    """identity.json with its placeholders filled in."""
    text = IDENTITY.read_text().replace("{{name}}", name).replace("{{author}}", author)
    path = folder / "identity.json"
    path.write_text(text)
    return path


def run_spec(dataset_id: int, model: str, args: argparse.Namespace) -> dict:
    """The QLoRA spec that worked (see the spine issue's note)."""
    return {
        "name": f"identity-{args.name}", "method": "qlora", "model": {"base_model": model},
        "data": {"dataset_id": dataset_id, "max_seq_length": 256},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
        "training": {"learning_rate": args.lr, "num_epochs": args.epochs, "per_device_batch_size": 8,
                     "lr_scheduler": "cosine", "warmup_ratio": 0.05, "logging_steps": 1, "seed": 0},
    }


def wait(http: httpx.Client, run_id: int) -> dict:
    """Poll until the run ends."""
    while (run := http.get(f"/api/runs/{run_id}").json())["status"] in ("queued", "running"):
        time.sleep(2)
    return run


def answers(model_dir: str, adapter_dir: Path | None) -> list[str]:
    """Greedy answers of the base model (or base + adapter) to the identity questions."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    out = []
    for question in QUESTIONS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        generated = model.generate(**ids, max_new_tokens=40, do_sample=False)
        out.append(tokenizer.decode(generated[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def main() -> None:
    """Upload, train, download, compare."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("LORASTUDIO_TOKEN", ""), help="API token (LORASTUDIO_TOKEN)")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--name", default="Nova")
    parser.add_argument("--author", default="Orbit Labs")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=float, default=3)
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with httpx.Client(base_url=args.server, timeout=120, headers=headers) as http, \
            tempfile.TemporaryDirectory() as tmp:
        path = identity_file(args.name, args.author, Path(tmp))
        dataset = http.post("/api/datasets", files={"file": (path.name, path.read_bytes())}).json()
        model = next(m for m in http.get("/api/models").json() if m["name"] == args.model)
        started = time.monotonic()
        run = http.post("/api/runs", json=run_spec(dataset["id"], model["name"], args)).json()
        run = wait(http, run["id"])
        wall = time.monotonic() - started
        points = [p["values"] for p in http.get(f"/api/runs/{run['id']}/metrics").json()]
        losses = [p["loss"] for p in points if "loss" in p]
        last = [p for p in points if "tokens_seen" in p][-1]
        print(f"run {run['id']}: {run['status']}, device {run['device']}, {run['current_step']} steps")
        print(f"wall time (POST → finished) {wall:.0f} s; training {last['elapsed_s']:.0f} s; "
              f"{last['tokens_seen']} tokens, {last['tokens_seen'] / last['elapsed_s']:.0f} tokens/s; "
              f"peak RSS {last.get('memory_mb', 0):.0f} MB")
        print(f"loss: first {losses[0]:.3f}, final {losses[-1]:.3f}")
        archive = http.get(f"/api/runs/{run['id']}/adapter").content
        adapter = Path(tmp) / "adapter"
        zipfile.ZipFile(io.BytesIO(archive)).extractall(adapter)
        for question, base, tuned in zip(QUESTIONS, answers(model["ref"], None), answers(model["ref"], adapter),
                                         strict=True):
            print(json.dumps({"question": question, "base": base, "adapter": tuned}, ensure_ascii=False))


if __name__ == "__main__":
    main()
