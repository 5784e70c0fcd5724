"""Malformed uploads: each is refused with a stable code, the line and the field a person must fix."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from app.core.datasets import DatasetProblem, Limits, inspect_dataset


def jsonl(*rows: Any) -> bytes:
    """Rows as JSON Lines bytes; a str row is written as it is (for broken lines)."""
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


def chat(*turns: tuple[str, Any]) -> dict[str, Any]:
    """An OpenAI messages row from (role, content) pairs."""
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def sharegpt(*turns: tuple[str, str], **extra: Any) -> dict[str, Any]:
    """A ShareGPT row from (from, value) pairs."""
    return {"conversations": [{"from": who, "value": value} for who, value in turns], **extra}


HI = ("user", "Hi")
HELLO = ("assistant", "Hello")
ARRAY_WITH_BAD_LINE_4 = b'[\n  {"text": "a"},\n  {"text": "b"},\n  {"text": "c" "d"}\n]'
CASES: list[tuple[str, str, bytes, str, int | None, str | None]] = [
    # id, file name, content, code, line, field
    ("bad-json-line-3", "d.jsonl", jsonl({"text": "a"}, {"text": "b"}, '{"text": "c",}'), "invalid_json", 3, None),
    ("bad-json-in-array", "d.json", ARRAY_WITH_BAD_LINE_4, "invalid_json", 4, None),
    ("array-trailing-comma", "d.json", b'[{"text": "a"},\n]', "invalid_json", 2, None),
    ("array-never-closed", "d.json", b'[{"text": "a"},\n{"text": "b"}\n', "invalid_json", 3, None),
    ("array-then-garbage", "d.json", b'[{"text": "a"}]\nxyz', "invalid_json", 2, None),
    (
        "missing-output",
        "d.jsonl",
        jsonl({"instruction": "a", "output": "b"}, {"instruction": "a", "input": ""}),
        "missing_field",
        2,
        "output",
    ),
    (
        "missing-field-in-array",
        "d.json",
        b'[\n{"prompt": "p", "completion": "c"},\n\n{"prompt": "p"}\n]',
        "missing_field",
        4,
        "completion",
    ),
    ("text-is-a-number", "d.jsonl", jsonl({"text": 42}), "wrong_type", 1, "text"),
    ("content-is-a-number", "d.jsonl", jsonl(chat(HI, ("assistant", 5))), "wrong_type", 1, "messages[1].content"),
    ("content-null", "d.jsonl", jsonl(chat(("user", None), HELLO)), "wrong_type", 1, "messages[0].content"),
    ("messages-not-a-list", "d.jsonl", jsonl({"messages": "hi"}), "wrong_type", 1, "messages"),
    ("message-not-an-object", "d.jsonl", jsonl({"messages": ["hi"]}), "wrong_type", 1, "messages[0]"),
    ("role-missing", "d.jsonl", jsonl({"messages": [{"content": "hi"}]}), "missing_field", 1, "messages[0].role"),
    (
        "history-not-pairs",
        "d.jsonl",
        jsonl({"instruction": "a", "output": "b", "history": ["q"]}),
        "wrong_type",
        1,
        "history[0]",
    ),
    ("empty-file", "d.jsonl", b"", "empty_file", None, None),
    ("whitespace-only", "d.jsonl", b"  \n\n\t \r\n", "empty_file", None, None),
    ("empty-array", "d.json", b"[ ]", "empty_file", None, None),
    ("csv-header-only", "d.csv", b"text\n", "empty_file", None, None),
    (
        "mixed-formats",
        "d.jsonl",
        jsonl({"text": "a"}, {"text": "b"}, {"instruction": "i", "output": "o"}),
        "mixed_formats",
        3,
        None,
    ),
    ("unknown-format", "d.jsonl", jsonl({"question": "q", "answer": "a"}), "unknown_format", 1, None),
    ("unknown-role", "d.jsonl", jsonl(chat(HI, ("bot", "Hello"))), "unknown_role", 1, "messages[1].role"),
    (
        "sharegpt-unknown-from",
        "d.jsonl",
        jsonl(sharegpt(("human", "Hi"), ("robot", "Hello"))),
        "unknown_role",
        1,
        "conversations[1].from",
    ),
    ("empty-assistant-turn", "d.jsonl", jsonl(chat(HI, ("assistant", " "))), "empty_field", 1, "messages[1].content"),
    (
        "empty-gpt-value",
        "d.jsonl",
        jsonl(sharegpt(("human", "Hi"), ("gpt", ""))),
        "empty_field",
        1,
        "conversations[1].value",
    ),
    ("empty-output", "d.jsonl", jsonl({"instruction": "a", "input": "", "output": ""}), "empty_field", 1, "output"),
    ("empty-text", "d.jsonl", jsonl({"text": "ok"}, {"text": ""}), "empty_field", 2, "text"),
    ("no-assistant-turn", "d.jsonl", jsonl(chat(("system", "Be kind"), HI)), "no_assistant_turn", 1, "messages"),
    ("starts-with-assistant", "d.jsonl", jsonl(chat(HELLO, HI)), "role_order", 1, "messages[0].role"),
    ("system-not-first", "d.jsonl", jsonl(chat(HI, HELLO, ("system", "x"))), "role_order", 1, "messages[2].role"),
    ("tool-after-user", "d.jsonl", jsonl(chat(HI, ("tool", "42"), HELLO)), "role_order", 1, "messages[1].role"),
    (
        "sharegpt-system-then-gpt",
        "d.jsonl",
        jsonl(sharegpt(("gpt", "Hello"), system="Be kind")),
        "role_order",
        1,
        "conversations[0].from",
    ),
    (
        "image-content-part",
        "d.jsonl",
        jsonl(chat(("user", [{"type": "image_url"}]), HELLO)),
        "unsupported_content",
        1,
        "messages[0].content[0].type",
    ),
    (
        "tool-call-without-name",
        "d.jsonl",
        jsonl(
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]},
                ]
            }
        ),
        "missing_field",
        1,
        "messages[1].tool_calls[0].function.name",
    ),
    ("csv-missing-columns", "d.csv", b"question,answer\nq,a\n", "csv_missing_columns", 1, None),
    ("csv-missing-output", "d.csv", b"instruction,input\nq,a\n", "csv_missing_columns", 1, "output"),
    ("csv-messages-column", "d.csv", b'messages\n"[]"\n', "csv_missing_columns", 1, None),
    ("csv-extra-cell", "d.csv", b"prompt,completion\np,c\np,c,x\n", "invalid_csv", 3, None),
    (
        "latin1-jsonl",
        "d.jsonl",
        jsonl({"text": "a"}) + '{"text": "café"}\n'.encode("latin-1"),
        "invalid_encoding",
        2,
        None,
    ),
    ("latin1-csv", "d.csv", "text\nok\ncafé\n".encode("latin-1"), "invalid_encoding", 3, None),
    (
        "latin1-json-array",
        "d.json",
        '[\n{"text": "a"},\n{"text": "café"}\n]'.encode("latin-1"),
        "invalid_encoding",
        3,
        None,
    ),
    ("utf16", "d.jsonl", '{"text": "a"}\n'.encode("utf-16"), "invalid_encoding", None, None),
    ("nul-bytes-as-jsonl", "d.jsonl", b'{"text": "a"}\n\x00\x00\x00\x01', "binary_content", 2, None),
    ("pickle-as-jsonl", "d.jsonl", pickle.dumps([{"text": "a"}]), "binary_content", None, None),
    ("pickle-extension", "d.pkl", b'{"text": "a"}\n', "binary_content", None, None),
    ("zip-as-jsonl", "d.jsonl", b"PK\x03\x04" + b"\x14" * 40, "unsupported_file_type", None, None),
    ("unknown-extension", "d.xlsx", b"hello", "unsupported_file_type", None, None),
    ("array-with-non-object", "d.json", b'[\n  {"text": "a"},\n  "b"\n]', "not_an_object", 3, None),
    ("jsonl-line-is-array", "d.jsonl", jsonl(["text", "a"]), "not_an_object", 1, None),
    ("top-level-object", "d.json", b'{\n  "data": [{"text": "a"}]\n}\n', "not_an_array", 1, None),
    ("corrupt-parquet", "d.parquet", b"PAR1" + b"\x07" * 64 + b"PAR1", "corrupt_parquet", None, None),
    ("parquet-name-text-content", "d.parquet", jsonl({"text": "a"}), "corrupt_parquet", None, None),
    (
        "dpo-preference-rows",
        "d.jsonl",
        jsonl({"prompt": "p", "chosen": "a", "rejected": "b"}),
        "unsupported_format",
        1,
        "chosen",
    ),
]


@pytest.mark.parametrize(
    ("filename", "content", "code", "line", "field"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_malformed_file_is_refused_with_code_line_and_field(
    tmp_path: Path, filename: str, content: bytes, code: str, line: int | None, field: str | None
) -> None:
    path = tmp_path / "upload"
    path.write_bytes(content)

    with pytest.raises(DatasetProblem) as caught:
        inspect_dataset(path, filename)

    problem = caught.value
    assert (problem.code, problem.line, problem.field) == (code, line, field), problem.message
    assert problem.to_dict() == {"code": code, "message": problem.message, "line": line, "field": field}
    assert len(problem.message) > 20


@pytest.mark.parametrize("filename", ["d.jsonl", "d.json", "d.csv"])
def test_utf8_bom_is_accepted_and_stripped(tmp_path: Path, filename: str) -> None:
    body = {"d.jsonl": jsonl({"text": "a"}), "d.json": b'[{"text": "a"}]', "d.csv": b"text\na\n"}[filename]
    path = tmp_path / "upload"
    path.write_bytes(b"\xef\xbb\xbf" + body)

    inspected = inspect_dataset(path, filename)

    assert (inspected.columns, inspected.preview) == (["text"], [{"text": "a"}])


@pytest.mark.parametrize(
    ("filename", "content", "line"),
    [
        ("d.jsonl", jsonl({"text": "a"}, {"text": "b" * 200}), 2),
        ("d.csv", b"text\na\n" + b"b" * 200 + b"\n", 3),
        ("d.json", b'[{"text": "a"},\n{"text": "' + b"b" * 300_000 + b'"}]', 2),
        ("d.json", b'[{"text": "a"},\n{"text": "' + b"b" * 210_000 + b'"}]', 2),
    ],
    ids=["jsonl", "csv", "json-array", "json-array-just-over"],
)
def test_rows_over_the_size_limit_are_refused(tmp_path: Path, filename: str, content: bytes, line: int) -> None:
    path = tmp_path / "upload"
    path.write_bytes(content)

    with pytest.raises(DatasetProblem) as caught:
        inspect_dataset(path, filename, Limits(max_row_bytes=100 if filename != "d.json" else 200_000))

    assert (caught.value.code, caught.value.line) == ("line_too_long", line)


def test_too_many_rows_is_refused_at_the_first_row_over(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(jsonl(*[{"text": str(n)} for n in range(5)]))

    with pytest.raises(DatasetProblem) as caught:
        inspect_dataset(path, "d.jsonl", Limits(max_rows=3))

    assert (caught.value.code, caught.value.line) == ("too_many_rows", 4)
