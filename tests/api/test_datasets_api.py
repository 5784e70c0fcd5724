"""Dataset upload over HTTP: formats detected, bad files refused with a located 4xx, nothing half-stored."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.uploads import assert_refused, stored_counts


def _jsonl(*rows: object) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def _parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
GOOD = [
    ("text.jsonl", _jsonl({"text": "a"}, {"text": "b"}), "text", 2),
    ("alpaca.json", json.dumps([{"instruction": "i", "input": "", "output": "o"}]).encode(), "alpaca", 1),
    ("chat.jsonl", _jsonl(CHAT, CHAT, CHAT), "messages", 3),
    ("share.jsonl", _jsonl({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}),
     "sharegpt", 1),
    ("pc.csv", b"prompt,completion\nSay hi,hi\nSay bye,bye\n", "prompt_completion", 2),
    ("text.parquet", _parquet([{"text": "x"}, {"text": "y"}]), "text", 2),
]


@pytest.mark.parametrize(("filename", "body", "fmt", "rows"), GOOD, ids=[g[0] for g in GOOD])
def test_upload_detects_format(client, filename: str, body: bytes, fmt: str, rows: int) -> None:
    response = client.post("/api/datasets", files={"file": (filename, body)}, data={"name": "d"})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["format"], dataset["row_count"], dataset["size_bytes"]) == (fmt, rows, len(body))
    assert len(dataset["sha256"]) == 64 and dataset["preview"]


def test_raw_body_upload_streams(client) -> None:
    response = client.post("/api/datasets?filename=chat.jsonl&name=raw", content=_jsonl(CHAT))
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "raw"


BAD = [
    ("bad-json", "d.jsonl", b'{"text": "a"}\n{"text": "b"\n', "invalid_json", 2, None),
    ("missing-field", "d.jsonl", _jsonl({"instruction": "i", "output": "o"}, {"instruction": "i"}), None, 2, None),
    ("wrong-type", "d.jsonl", _jsonl({"text": "a"}, {"text": 3}), "wrong_type", 2, "text"),
    ("empty-file", "d.jsonl", b"", "empty_file", None, None),
    ("mixed-formats", "d.jsonl", _jsonl({"text": "a"}, CHAT), "mixed_formats", 2, None),
    ("unknown-role", "d.jsonl", _jsonl({"messages": [{"role": "wizard", "content": "x"},
                                                    {"role": "assistant", "content": "y"}]}), "unknown_role", 1, None),
    ("empty-assistant", "d.jsonl", _jsonl({"messages": [{"role": "user", "content": "x"},
                                                       {"role": "assistant", "content": ""}]}), "empty_field", 1, None),
    ("csv-columns", "d.csv", b"question,answer\nq,a\n", "csv_missing_columns", None, None),
    ("not-an-object", "d.jsonl", b'["a", "b"]\n', None, 1, None),
    ("pickle", "d.jsonl", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94.", None, None, None),
    ("latin-1", "d.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"), "invalid_encoding", 1, None),
    ("no-assistant", "d.jsonl", _jsonl({"messages": [{"role": "user", "content": "x"}]}), "no_assistant_turn", 1, None),
    ("unknown-format", "d.jsonl", _jsonl({"question": "x", "answer": "y"}), "unknown_format", 1, None),
]


@pytest.mark.parametrize(("case", "filename", "body", "code", "line", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_upload_is_refused_and_nothing_is_stored(
    client, session, case: str, filename: str, body: bytes, code: str | None, line: int | None, field: str | None
) -> None:
    before = stored_counts(session)
    assert_refused(client.post("/api/datasets", files={"file": (filename, body)}), code, line, field)
    assert stored_counts(session) == before


def test_upload_over_the_limit_gets_413(app, client) -> None:
    limit = app.state.resources.settings.max_upload_bytes
    app.state.resources.settings.max_upload_bytes = 1000
    try:
        # BodySizeLimit reads the limit at start-up; build a fresh app for the small cap.
        from fastapi.testclient import TestClient

        from app.main import create_app

        with TestClient(create_app(app.state.resources), headers=client.headers) as small:
            response = small.post("/api/datasets", files={"file": ("big.jsonl", _jsonl(*[{"text": "x" * 100}] * 50))})
    finally:
        app.state.resources.settings.max_upload_bytes = limit
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
