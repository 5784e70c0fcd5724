"""Format detection in every file type, canonical rows, the shared demo datasets, and streaming memory use."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.core.datasets import DatasetProblem, inspect_dataset, iter_canonical, write_canonical_jsonl
from tests.support.requirements import require

SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
]
ROWS: dict[str, list[dict[str, Any]]] = {
    "text": [{"text": "First document."}, {"text": "Second document."}],
    "prompt_completion": [{"prompt": "2+2=", "completion": "4"}, {"prompt": "", "completion": "Once upon a time"}],
    "alpaca": [
        {"instruction": "Translate", "input": "chat", "output": "cat", "system": "You translate."},
        {"instruction": "Say hi", "input": "", "output": "Hi"},
    ],
    "messages": [{"messages": CHAT}, {"messages": CHAT[1:]}],
    "sharegpt": [
        {
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
            "system": "Be brief.",
        },
        {"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello!"}]},
    ],
}
CANONICAL_FIRST: dict[str, dict[str, Any]] = {
    "text": {"text": "First document."},
    "prompt_completion": {"prompt": "2+2=", "completion": "4"},
    "alpaca": {
        "messages": [
            {"role": "system", "content": "You translate."},
            {"role": "user", "content": "Translate\n\nchat"},
            {"role": "assistant", "content": "cat"},
        ]
    },
    "messages": {"messages": CHAT},
    "sharegpt": {"messages": CHAT},
}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSON Lines."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_json(path: Path, rows: list[Any]) -> Path:
    """Rows as an indented JSON array."""
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as CSV with a header."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as a Parquet file."""
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {"jsonl": write_jsonl, "json": write_json, "csv": write_csv, "parquet": write_parquet}
CASES = [
    (file_type, format)
    for format in ROWS
    for file_type in WRITERS
    if file_type != "csv" or format not in ("messages", "sharegpt")
]


@pytest.mark.parametrize(("file_type", "format"), CASES, ids=[f"{f}-{t}" for t, f in CASES])
def test_each_format_is_detected_in_each_file_type(tmp_path: Path, file_type: str, format: str) -> None:
    rows = ROWS[format]
    path = WRITERS[file_type](tmp_path / f"upload.{file_type}", rows)

    inspected = inspect_dataset(path, f"data.{file_type}")

    assert (inspected.file_type, inspected.format, inspected.row_count) == (file_type, format, 2)
    assert inspected.columns == list(rows[0])
    canonical = list(iter_canonical(path, file_type, format))  # type: ignore[arg-type]
    assert canonical[0] == CANONICAL_FIRST[format]
    assert len(canonical) == 2


def test_alpaca_history_becomes_earlier_turns(tmp_path: Path) -> None:
    row = {"instruction": "And 3+3?", "input": "", "output": "6", "history": [["2+2?", "4"]]}
    path = write_jsonl(tmp_path / "a.jsonl", [row])

    assert list(iter_canonical(path, "jsonl", "alpaca")) == [
        {
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "And 3+3?"},
                {"role": "assistant", "content": "6"},
            ]
        }
    ]


def test_sharegpt_tool_turns_map_to_assistant_and_tool(tmp_path: Path) -> None:
    turns = [("human", "Weather?"), ("function_call", '{"name": "w"}'), ("observation", "sunny"), ("gpt", "Sunny.")]
    row = {"conversations": [{"from": f, "value": v} for f, v in turns], "tools": "[]"}
    path = write_jsonl(tmp_path / "t.jsonl", [row])

    [canonical] = iter_canonical(path, "jsonl", "sharegpt")

    assert [m["role"] for m in canonical["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert "tools" not in canonical


def test_openai_tool_calls_become_assistant_json_content(tmp_path: Path) -> None:
    call = {"type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": [{"type": "text", "text": "It is sunny."}]},
    ]
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": messages}])

    [canonical] = iter_canonical(path, "jsonl", "messages")

    assert json.loads(canonical["messages"][1]["content"]) == {"name": "weather", "arguments": {"city": "Oslo"}}
    assert canonical["messages"][3] == {"role": "assistant", "content": "It is sunny."}


def test_content_wins_over_extension(tmp_path: Path) -> None:
    array = write_json(tmp_path / "x", ROWS["text"])
    lines = write_jsonl(tmp_path / "y", ROWS["text"])
    parquet = write_parquet(tmp_path / "z", ROWS["text"])

    assert inspect_dataset(array, "data.jsonl").file_type == "json"
    assert inspect_dataset(lines, "data.json").file_type == "jsonl"
    assert inspect_dataset(parquet, "data.csv").file_type == "parquet"


def test_preview_cuts_long_strings_and_keeps_five_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "x" * 2000}] * 7)

    inspected = inspect_dataset(path, "p.jsonl")

    assert inspected.row_count == 7
    assert len(inspected.preview) == 5
    assert len(inspected.preview[0]["text"]) == 501


def test_write_canonical_jsonl_streams_rows_to_dest(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", ROWS["alpaca"])
    dest = tmp_path / "out.jsonl"

    count = write_canonical_jsonl(path, "csv", "alpaca", dest)

    lines = dest.read_text(encoding="utf-8").splitlines()
    assert count == len(lines) == 2
    assert json.loads(lines[0]) == CANONICAL_FIRST["alpaca"]


def test_write_canonical_jsonl_leaves_nothing_on_a_bad_row(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"text": ""}])
    dest = tmp_path / "out.jsonl"

    with pytest.raises(DatasetProblem):
        write_canonical_jsonl(path, "jsonl", "text", dest)

    assert list(tmp_path.iterdir()) == [path]


SHARED = [
    ("identity.json", "json", "alpaca", 91),
    ("alpaca_en_demo.json", "json", "alpaca", 999),  # the LLaMA-Factory demo holds 999 rows, not 1000
    ("c4_demo.jsonl", "jsonl", "text", 300),
    ("glaive_toolcall_en_demo.json", "json", "sharegpt", 300),
]


@pytest.mark.parametrize(("name", "file_type", "format", "rows"), SHARED, ids=[case[0] for case in SHARED])
def test_shared_demo_datasets(name: str, file_type: str, format: str, rows: int) -> None:
    path = SHARED_DATASETS / name
    require(path.exists(), f"{path} is absent: put the shared demo datasets beside the repository "
            "(../shared/datasets)")

    inspected = inspect_dataset(path, name)

    assert (inspected.file_type, inspected.format, inspected.row_count) == (file_type, format, rows)
    assert sum(1 for _ in iter_canonical(path, inspected.file_type, inspected.format)) == rows


def test_shared_dpo_dataset_is_refused_as_preference_data() -> None:
    path = SHARED_DATASETS / "dpo_en_demo.json"
    require(path.exists(), f"{path} is absent: put the shared demo datasets beside the repository "
            "(../shared/datasets)")

    with pytest.raises(DatasetProblem) as caught:
        inspect_dataset(path, path.name)

    assert (caught.value.code, caught.value.line, caught.value.field) == ("unsupported_format", 2, "chosen")


@pytest.mark.parametrize("file_type", ["jsonl", "json"])
def test_large_file_is_inspected_with_bounded_memory(tmp_path: Path, file_type: str) -> None:
    path = tmp_path / f"big.{file_type}"
    row = json.dumps({"instruction": "Summarise this. " * 8, "input": "", "output": "A summary. " * 12})
    with path.open("w", encoding="utf-8") as file:
        if file_type == "json":
            file.write("[\n" + ",\n".join(row for _ in range(200_000)) + "\n]")
        else:
            file.writelines(row + "\n" for _ in range(200_000))
    size = path.stat().st_size
    assert size > 50 * 10**6

    tracemalloc.start()
    try:
        inspected = inspect_dataset(path, path.name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert inspected.row_count == 200_000
    assert peak < size // 50, f"peak {peak:,} bytes for a {size:,}-byte file"
