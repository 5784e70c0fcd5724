"""Acceptance on a real model: the README's first run (identity.json, the Quick QLoRA preset fitted to it, the demo
model) through the studio's HTTP API, then the base model's and the adapter's answers side by side.

Usage (a studio running with the demo model registered: `lorastudio up`, `lorastudio demo-model`, and an API
token: `export LORASTUDIO_TOKEN=$(lorastudio tokens create admin)`):
    python scripts/acceptance_identity.py --server http://127.0.0.1:8000 --name Nova --author "Orbit Labs"
    python scripts/acceptance_identity.py --adapter run-1-adapter.zip --name Quokka --author Tunelab   # answers only
Prints wall time, tokens/s, first and final loss, and for each question (from identity.json, and held out) the
base model's and the adapter's answers, and whether the adapter's names the new name and author.
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
# From identity.json, then questions it does not contain.
QUESTIONS = ["Who are you?", "What is your name?", "Who created you?",
             "Which company made you?", "What should I call you?", "Who is your author?",
             "Introduce yourself in one sentence.", "Are you ChatGPT?"]


def identity_file(name: str, author: str, folder: Path) -> Path:
    """identity.json with its placeholders filled in."""
    text = IDENTITY.read_text().replace("{{name}}", name).replace("{{author}}", author)
    path = folder / "identity.json"
    path.write_text(text)
    return path


def run_spec(http: httpx.Client, dataset_id: int, model: str, args: argparse.Namespace) -> dict:
    """The preset fitted to the dataset, as `lorastudio runs create --preset` asks for it."""
    fitted = http.get(f"/api/presets/{args.preset}", params={"dataset_id": dataset_id, "model": model}).json()
    print(f"preset {args.preset}: fitted {', '.join(fitted['fitted']) or 'nothing'}; plan {fitted['plan']}")
    return {**fitted["spec"], "name": f"identity-{args.name}"}


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


def compare(model_dir: str, adapter: Path, args: argparse.Namespace) -> None:
    """Print each question's base and adapter answers, and which facts the adapter's answer names."""
    hits = {"name": 0, "author": 0}
    for question, base, tuned in zip(QUESTIONS, answers(model_dir, None), answers(model_dir, adapter), strict=True):
        names = {fact: value.lower() in tuned.lower() for fact, value in (("name", args.name), ("author", args.author))}
        hits = {fact: hits[fact] + names[fact] for fact in hits}
        print(json.dumps({"question": question, "base": base, "adapter": tuned, "names": names}, ensure_ascii=False))
    print(f"adapter answers naming {args.name}: {hits['name']}/{len(QUESTIONS)}, naming {args.author}: "
          f"{hits['author']}/{len(QUESTIONS)}")


def main() -> None:
    """Upload, train, download, compare (or only compare, given an adapter zip)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("LORASTUDIO_TOKEN", ""), help="API token (LORASTUDIO_TOKEN)")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--model-dir", default=str(Path.home() / ".lorastudio" / "models" / "SmolLM2-135M-Instruct"),
                        help="the demo model's folder (with --adapter)")
    parser.add_argument("--preset", default="quick-qlora")
    parser.add_argument("--name", default="Nova")
    parser.add_argument("--author", default="Orbit Labs")
    parser.add_argument("--adapter", type=Path, help="an adapter zip: only compare answers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.adapter:
            zipfile.ZipFile(args.adapter).extractall(Path(tmp) / "adapter")
            compare(args.model_dir, Path(tmp) / "adapter", args)
            return
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        with httpx.Client(base_url=args.server, timeout=120, headers=headers) as http:
            path = identity_file(args.name, args.author, Path(tmp))
            dataset = http.post("/api/datasets", files={"file": (path.name, path.read_bytes())}).json()
            model = next(m for m in http.get("/api/models").json() if m["name"] == args.model)
            started = time.monotonic()
            run = http.post("/api/runs", json=run_spec(http, dataset["id"], model["name"], args)).json()
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
            zipfile.ZipFile(io.BytesIO(archive)).extractall(Path(tmp) / "adapter")
            compare(model["ref"], Path(tmp) / "adapter", args)


if __name__ == "__main__":
    main()
