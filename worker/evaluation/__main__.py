"""python -m worker.evaluation INPUTS --out RESULTS: generate with the base (and the adapter) on every example,
score both sides, summarise, write RESULTS (JSON) and report a Result naming it; or an Error with the reason.
Progress: a Started report with total_steps = generations to make, then a Metric whose step is the number made."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from worker.evaluation import report
from worker.evaluation.inputs import EvaluationInputs
from worker.evaluation.judge import Judge, JudgeError
from worker.evaluation.scorers import SCORERS, ScorerError, where
from worker.planning.reports import Error, Metric, Result, Started
from worker.trainer.__main__ import claim_stdout, die_with_parent
from worker.trainer.sinks import JsonLinesSink


def score(inputs: EvaluationInputs, example: dict[str, Any], output: str, judge: Judge | None) -> dict[str, Any]:
    """Every scorer's score of one output (None where a scorer does not apply to the example)."""
    scores: dict[str, Any] = {}
    for name in inputs.scorers:
        if name == "judge":
            from app.core.eval_sets import prompt_text

            scores[name] = judge.score(prompt_text(example), example["reference"], output) if judge else None
        else:
            scores[name] = SCORERS[name](output, example)
    return scores


def scored_part(inputs: EvaluationInputs, part: str, examples: list[dict[str, Any]], outputs: dict,
                judge: Judge | None) -> list[dict[str, Any]]:
    """The part's examples as stored: prompt, reference, both outputs, the adapter hash applied, scores."""
    from app.core.eval_sets import prompt_text

    rows = []
    for position, example in enumerate(examples):
        base_output, _ = outputs[(part, position, "base")]
        adapter_output, applied = outputs.get((part, position, "adapter"), (None, None))
        rows.append({
            "part": part, "index": example["index"], "prompt": prompt_text(example),
            "reference": example["reference"], "base_output": base_output, "adapter_output": adapter_output,
            "adapter_sha256": applied, "base_scores": score(inputs, example, base_output, judge),
            "adapter_scores": score(inputs, example, adapter_output, judge) if adapter_output is not None else {},
        })
    return rows


def evaluate(inputs: EvaluationInputs, sink: JsonLinesSink) -> dict[str, Any]:
    """Generate, score and summarise; the results file's content."""
    import torch

    from worker.evaluation import generate
    from worker.trainer.model import pick_device

    device = pick_device()
    parts = {"main": inputs.examples, "general": inputs.general}
    items = [item for part, examples in parts.items() for item in generate.requests(inputs, part, examples)]

    def where_key(key: tuple[str, int, str]) -> str:
        part, position, _ = key
        example = parts[part][position]
        return f"General set, {where(example).lower()}" if part == "general" else where(example)

    sink.emit(Started(device=device, total_steps=len(items)))
    loaded = generate.load(inputs, device, torch.float32 if device == "cpu" else None)
    generate.check_prompts(loaded, items, where_key)
    started = time.monotonic()
    outputs = generate.generate(loaded, items, inputs.batch_size, where_key,
                                lambda done: sink.emit(Metric(step=done, elapsed_s=time.monotonic() - started)))
    judge = Judge(inputs.judge, inputs.rubric or "") if "judge" in inputs.scorers and inputs.judge else None
    results: dict[str, Any] = {"examples": [], "summary": {}}
    for part, examples in parts.items():
        if part == "general" and not examples:
            continue
        rows = scored_part(inputs, part, examples, outputs, judge)
        results["summary"][part] = report.summarize(rows, inputs.scorers, inputs.seed)
        results["examples"] += rows
    applied = {row["adapter_sha256"] for row in results["examples"] if row["adapter_output"] is not None}
    results["summary"]["adapter_sha256_applied"] = sorted(applied)
    return results


def main(argv: list[str] | None = None) -> int:
    """Evaluate; exit 0 after a Result, 1 after an Error."""
    parser = argparse.ArgumentParser(prog="python -m worker.evaluation", description=__doc__)
    parser.add_argument("inputs", type=Path, help="EvaluationInputs (JSON)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the results (JSON)")
    args = parser.parse_args(argv)
    die_with_parent()
    sink = JsonLinesSink(claim_stdout())
    try:
        from worker.evaluation.generate import EvaluationFailed

        inputs = EvaluationInputs.model_validate_json(args.inputs.read_text())
        results = evaluate(inputs, sink)
        args.out.write_text(json.dumps(results, ensure_ascii=False))
    except Exception as exc:
        sink.emit(_error(exc, EvaluationFailed))
        return 1
    sink.emit(Result(data={"results": str(args.out)}))
    return 0


def _error(exc: Exception, failed: type) -> Error:
    """The Error report for what stopped the evaluation: its own reason where it has one."""
    tail = "".join(traceback.format_exception(exc))[-4000:]
    if isinstance(exc, failed):
        return Error(code=exc.code, message=exc.message, traceback=tail)
    if isinstance(exc, JudgeError):
        return Error(code="judge_failed", message=str(exc), traceback=tail)
    if isinstance(exc, ScorerError):
        return Error(code="invalid_eval_row", message=str(exc), traceback=tail)
    return Error(code="internal_error", message=f"{type(exc).__name__}: {exc}", traceback=tail)


if __name__ == "__main__":
    sys.exit(main())
