"""The HTTP side of benchmarks/generation_throughput.py: streamed /v1/chat/completions requests timed as a client
sees them (time to first content, completion tokens from usage), levels of concurrent streams, the adapter switch."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.accounts import Account

SWITCH_TOKENS = 8  # the switch requests measure TTFT: a short completion is enough


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def emit(row: dict[str, Any]) -> None:
    """One JSON line."""
    print(json.dumps(row), flush=True)


@dataclass(frozen=True)
class Catalog:
    """What the benchmark generates with: the base's model id, two adapters' (`run-<id>`), and who asks."""

    base: str
    adapter: str
    second_adapter: str
    account: Account


@dataclass
class Sample:
    """One streamed completion as its client saw it."""

    model: str
    ttft_s: float = 0.0
    seconds: float = 0.0
    tokens: int = 0
    text: str = ""
    error: str | None = None


async def chat(client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int) -> Sample:
    """One /v1/chat/completions stream (greedy); TTFT is request sent → first chunk with content."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    sample, parts, first = Sample(model), [], None
    sent = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                sample.error = f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
                return sample
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    sample.error = json.dumps(chunk["error"])[:300]
                    return sample
                if chunk.get("usage"):
                    sample.tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    if choice.get("delta", {}).get("content"):
                        first = first or time.perf_counter()
                        parts.append(choice["delta"]["content"])
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"[:300]
        return sample
    sample.seconds = time.perf_counter() - sent
    sample.ttft_s = (first or time.perf_counter()) - sent
    sample.text = "".join(parts)
    if not sample.tokens:
        sample.error = "no usage chunk (completion tokens unknown)"
    return sample


async def level(client: httpx.AsyncClient, models: list[str], prompts: list[str], streams: int,
                max_tokens: int) -> tuple[list[Sample], float]:
    """Every prompt once (request i on models[i % len(models)]), `streams` at a time; (samples, wall seconds)."""
    work: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for i, prompt in enumerate(prompts):
        work.put_nowait((models[i % len(models)], prompt))
    samples: list[Sample] = []

    async def stream() -> None:
        while not work.empty():
            model, prompt = work.get_nowait()
            samples.append(await chat(client, model, prompt, max_tokens))

    started = time.perf_counter()
    await asyncio.gather(*(stream() for _ in range(streams)))
    return samples, time.perf_counter() - started


def level_row(kind: str, streams: int, samples: list[Sample], wall_s: float) -> dict[str, Any]:
    """A level's JSON row: aggregate and per-stream tokens/s, TTFT percentiles, failures."""
    ok = [s for s in samples if s.error is None]
    tokens = sum(s.tokens for s in ok)
    ttft = [s.ttft_s * 1000 for s in ok]
    return {"measure": "studio", "model": kind, "streams": streams, "requests": len(samples),
            "failures": len(samples) - len(ok), "errors": sorted({s.error for s in samples if s.error})[:3],
            "tokens": tokens, "mean_tokens": round(tokens / len(ok), 1) if ok else 0, "wall_s": round(wall_s, 3),
            "agg_tps": round(tokens / wall_s, 2) if wall_s else 0.0,
            "ttft_p50_ms": round(percentile(ttft, 50), 1), "ttft_p95_ms": round(percentile(ttft, 95), 1),
            "stream_tps_p50": round(percentile([s.tokens / s.seconds for s in ok if s.seconds], 50), 2)}


async def switch_rows(client: httpx.AsyncClient, cat: Catalog, prompt: str) -> list[dict[str, Any]]:
    """The adapter switch: a loaded adapter's TTFT, then a first request on the second adapter (its load), then
    requests alternating the two, once both are loaded (the base's batches mix adapters: ~0 extra expected)."""
    async def ttfts(models: list[str]) -> list[Sample]:
        return [await chat(client, m, prompt, SWITCH_TOKENS) for m in models]

    loaded = await ttfts([cat.adapter] * 3)
    first = await ttfts([cat.second_adapter])
    alternating = await ttfts([cat.adapter, cat.second_adapter] * 3)
    samples = loaded + first + alternating
    bad = [s.error for s in samples if s.error]
    ref = statistics.median(s.ttft_s for s in loaded) * 1000 if not bad else 0.0
    rows = [{"measure": "adapter-switch", "case": "loaded", "ttft_ms": round(ref, 1)},
            {"measure": "adapter-switch", "case": "first request on a second adapter",
             "ttft_ms": round(first[0].ttft_s * 1000, 1), "extra_ms": round(first[0].ttft_s * 1000 - ref, 1)}]
    alt = statistics.median(s.ttft_s for s in alternating) * 1000 if not bad else 0.0
    rows.append({"measure": "adapter-switch", "case": "alternating two loaded adapters", "ttft_ms": round(alt, 1),
                 "extra_ms": round(alt - ref, 1)})
    if bad:
        rows.append({"measure": "adapter-switch", "failures": len(bad), "errors": sorted(set(bad))[:3]})
    return rows


async def studio_levels(url: str, cat: Catalog, prompts: list[str], streams: list[int],
                        max_tokens: int) -> list[dict[str, Any]]:
    """Warm-ups, then every level: base, adapter, mixed, base once adapters are loaded; then the switch."""
    rows: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=max(streams) + 4, max_keepalive_connections=max(streams) + 4)
    timeout = httpx.Timeout(300, connect=10)
    async with httpx.AsyncClient(base_url=url, headers=cat.account.headers, timeout=timeout, limits=limits) as client:

        async def warm(kind: str, model: str) -> Sample:
            sample = await chat(client, model, prompts[0], max_tokens)
            rows.append({"measure": "warm-up", "model": kind, "seconds": round(sample.seconds, 3),
                         "tokens": sample.tokens, "error": sample.error})
            return sample

        async def run(kind: str, models: list[str], which: list[int]) -> None:
            for n in which:
                samples, wall = await level(client, models, prompts, n, max_tokens)
                rows.append(level_row(kind, n, samples, wall))
                emit(rows[-1])

        base = await warm("base (loads it)", cat.base)
        emit(rows[-1])
        await run("base", [cat.base], streams)
        adapted = await warm("adapter (loads it)", cat.adapter)
        rows[-1]["greedy_text_differs_from_base"] = adapted.text != base.text  # the adapter is applied
        emit(rows[-1])
        await run("adapter", [cat.adapter], streams)
        await run("mixed", [cat.base, cat.adapter], [n for n in streams if n > 1])
        await run("base, adapters loaded", [cat.base], streams)
        for row in await switch_rows(client, cat, prompts[0]):
            rows.append(row)
            emit(row)
    return rows
