"""python -m worker.trainer.analysis_job ROWS --model REF [--gguf-file F] --max-seq-length N [--system-prompt=S]:
the dataset doctor as a child job. It reads canonical JSONL rows, renders them with the model's tokenizer (which
imports torch through transformers: hence a child process, not the Celery worker) and the run's system prompt, and
reports one Result, or an Error."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from worker.planning.reports import Error, Result
from worker.trainer.__main__ import claim_stdout, die_with_parent
from worker.trainer.errors import TrainerError
from worker.trainer.sinks import JsonLinesSink


def main(argv: list[str] | None = None) -> int:
    """Analyse the rows; exit 0 after a Result, 1 after an Error."""
    parser = argparse.ArgumentParser(prog="python -m worker.trainer.analysis_job", description=__doc__)
    parser.add_argument("rows", type=Path, help="canonical JSONL (one row a line)")
    parser.add_argument("--model", required=True, help="a local model folder or a Hugging Face id")
    parser.add_argument("--gguf-file", help="a GGUF checkpoint inside the model folder")
    parser.add_argument("--max-seq-length", type=int, required=True)
    parser.add_argument("--system-prompt", help="a run's data.system_prompt: the system turn of chats without one "
                        "(pass it as --system-prompt=TEXT, so a text starting with '-' stays a value)")
    args = parser.parse_args(argv)
    die_with_parent()
    sink = JsonLinesSink(claim_stdout())
    try:
        from worker.trainer.doctor import analyze
        from worker.trainer.tokenizers import load_tokenizer_from

        tokenizer = load_tokenizer_from(args.model, args.gguf_file)
        with args.rows.open("rb") as lines:
            result = analyze((json.loads(line) for line in lines), tokenizer, args.max_seq_length,
                             system_prompt=args.system_prompt)
    except Exception as exc:
        code = exc.code if isinstance(exc, TrainerError) else "internal_error"
        sink.emit(Error(code=code, message=f"{type(exc).__name__}: {exc}",
                        traceback="".join(traceback.format_exception(exc))[-4000:]))
        return 1
    sink.emit(Result(data=result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
