"""Hostile and malformed uploads over HTTP: each is a located 4xx with a stable code, and nothing is stored."""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import pytest

from app.core.datasets.limits import DEFAULT_LIMITS
from tests.support.uploads import assert_refused, stored_counts

BOM = b"\xef\xbb\xbf"
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _jsonl(*rows: object) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def _chat(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def _zip_bomb() -> bytes:
    """100 MiB of zeros in a ~100 KiB zip: refused by its magic number, never inflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.jsonl", b"\0" * (100 << 20))
    return buffer.getvalue()


def _nested(depth: int) -> bytes:
    return b'{"text": "a", "meta": ' + b"[" * depth + b"]" * depth + b"}\n"


PICKLE = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94."
HUGE = b'{"text": "' + b"a" * DEFAULT_LIMITS.max_row_bytes + b'"}\n'

# (id, file name, body, code, line, field); line/field None means "not asserted".
CASES = [
    ("broken-json-line-1", "d.jsonl", b'{"text": "a"\n', "invalid_json", 1, None),
    ("broken-json-line-3", "d.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": b}\n', "invalid_json", 3, None),
    ("bom-broken-json", "d.jsonl", BOM + b'{"text": \n', "invalid_json", 1, None),
    ("bom-broken-array", "d.json", BOM + b'[{"text": "a"},\n{"text" "b"}]', "invalid_json", 2, None),
    ("array-trailing-comma", "d.json", b'[{"text": "a"},\n]', "invalid_json", 2, None),
    ("array-never-closed", "d.json", b'[{"text": "a"}', "invalid_json", None, None),
    ("latin-1", "d.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"), "invalid_encoding", 1, None),
    ("latin-1-line-2", "d.jsonl", '{"text": "a"}\n{"text": "\xfc"}\n'.encode("latin-1"), "invalid_encoding", 2, None),
    ("latin-1-csv", "d.csv", "text\nna\xefve\n".encode("latin-1"), "invalid_encoding", 2, None),
    ("utf-16-bom", "d.jsonl", '{"text": "a"}\n'.encode("utf-16"), "invalid_encoding", None, None),
    ("utf-16-be-bom", "d.json", b"\xfe\xff" + '[{"text": "a"}]'.encode("utf-16-be"), "invalid_encoding", None, None),
    ("utf-16-no-bom", "d.jsonl", '{"text": "a"}\n'.encode("utf-16-le"), "binary_content", 1, None),
    ("nul-bytes", "d.jsonl", b'{"text": "a"}\n{"text": "b\x00"}\n', "binary_content", 2, None),
    ("nul-bytes-csv", "d.csv", b"text\na\x00b\n", "binary_content", 2, None),
    ("nul-after-head", "d.jsonl", _jsonl(*[{"text": "x" * 100}] * 700) + b'\n{"text": "\x00"}\n',
     "invalid_json", 701, None),
    ("huge-line", "d.jsonl", HUGE, "line_too_long", 1, None),
    ("huge-array-element", "d.json", b"[" + HUGE + b"]", "line_too_long", 1, None),
    ("deep-nesting-100k", "d.jsonl", _nested(100_000), "too_deeply_nested", 1, None),
    ("deep-nesting-array-100k", "d.json", b"[" + _nested(100_000) + b"]", "too_deeply_nested", 1, None),
    ("deep-nesting-500", "d.jsonl", _nested(500), "too_deeply_nested", 1, None),
    ("duplicate-key", "d.jsonl", b'{"text": "a"}\n{"text": "b", "text": "c"}\n', "duplicate_key", 2, "text"),
    ("duplicate-key-array", "d.json", b'[{"text": "a"},\n {"text": "b", "text": "c"}]', "duplicate_key", 2, "text"),
    ("duplicate-key-nested", "d.jsonl",
     b'{"messages": [{"role": "user", "role": "assistant", "content": "x"}]}\n', "duplicate_key", 1, "role"),
    ("missing-output", "d.jsonl", _jsonl({"instruction": "i", "output": "o"}, {"instruction": "i"}),
     "missing_field", 2, "output"),
    ("missing-content", "d.jsonl", _jsonl({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}),
     "missing_field", 1, None),
    ("extra-fields-only", "d.jsonl", _jsonl({"question": "x", "answer": "y"}), "unknown_format", 1, None),
    ("extra-field-changes-format", "d.jsonl", _jsonl({"text": "a"}, {"text": "b", "prompt": "x"}),
     "mixed_formats", 2, None),
    ("wrong-type-text", "d.jsonl", _jsonl({"text": "a"}, {"text": 3}), "wrong_type", 2, "text"),
    ("wrong-type-messages", "d.jsonl", _jsonl({"messages": "hi"}), "wrong_type", 1, "messages"),
    ("wrong-type-content-null", "d.jsonl", _jsonl(_chat(("user", "x"), ("assistant", None))), None, 1, None),
    ("empty-text", "d.jsonl", _jsonl({"text": "   "}), "empty_field", 1, "text"),
    ("empty-completion", "d.jsonl", _jsonl({"prompt": "p", "completion": ""}), "empty_field", 1, "completion"),
    ("unknown-role", "d.jsonl", _jsonl(_chat(("wizard", "x"), ("assistant", "y"))), "unknown_role", 1, None),
    ("no-assistant-turn", "d.jsonl", _jsonl(_chat(("user", "x"))), "no_assistant_turn", 1, None),
    ("assistant-first", "d.jsonl", _jsonl(_chat(("assistant", "x"), ("user", "y"))), None, 1, None),
    ("mixed-formats", "d.jsonl", _jsonl({"text": "a"}, CHAT), "mixed_formats", 2, None),
    ("row-not-object", "d.jsonl", b'["a", "b"]\n', "not_an_object", 1, None),
    ("csv-missing-columns", "d.csv", b"question,answer\nq,a\n", "csv_missing_columns", 1, None),
    ("csv-half-pair", "d.csv", b"prompt,other\nq,a\n", "csv_missing_columns", 1, "completion"),
    ("csv-ragged-row", "d.csv", b"text\na\nb,c\n", "invalid_csv", 3, None),
    ("csv-header-only", "d.csv", b"text\n", "empty_file", None, None),
    ("corrupt-parquet", "d.parquet", b"PAR1" + b"\x07" * 200, "corrupt_parquet", None, None),
    ("parquet-not-par1", "d.parquet", b"not parquet at all", "corrupt_parquet", None, None),
    ("pickle-as-jsonl", "d.jsonl", PICKLE, "binary_content", None, None),
    ("pickle-protocol-0-as-jsonl", "d.jsonl", b"cos\nsystem\n(S'echo pwned'\ntR.", "invalid_json", 1, None),
    ("zip-bomb-as-jsonl", "d.jsonl", _zip_bomb(), "unsupported_file_type", None, None),
    ("gzip-bomb-as-jsonl", "d.jsonl", gzip.compress(b"\0" * (50 << 20)), "unsupported_file_type", None, None),
    ("sqlite-as-json", "d.json", b"SQLite format 3\x00" + b"\0" * 100, "unsupported_file_type", None, None),
    ("pdf-as-csv", "d.csv", b"%PDF-1.7\n...", "unsupported_file_type", None, None),
    ("executable-extension", "d.exe", b"text\nhello\n", "unsupported_file_type", None, None),
    ("single-object-json", "d.json", b'{"text": "a",\n "more": 1}', "not_an_array", 1, None),
    ("empty-file", "d.jsonl", b"", "empty_file", None, None),
    ("whitespace-only", "d.jsonl", b"  \n\n \t\n", "empty_file", None, None),
    ("preference-pairs", "d.jsonl", _jsonl({"prompt": "p", "chosen": "a", "rejected": "b"}),
     "unsupported_format", 1, "chosen"),
    ("traversal-to-nothing", "../", _jsonl({"text": "a"}), "missing_filename", None, "file"),
    ("backslash-dir-only", "..\\..\\", _jsonl({"text": "a"}), "missing_filename", None, "file"),
    ("empty-filename", "", _jsonl({"text": "a"}), None, None, None),
]


@pytest.mark.parametrize(("filename", "body", "code", "line", "field"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_upload_is_refused_and_nothing_is_stored(client, session, filename, body, code, line, field) -> None:
    before = stored_counts(session)
    response = client.post("/api/datasets", files={"file": (filename, body)})
    assert_refused(response, code, line, field)
    assert stored_counts(session) == before


FORM_CASES = [
    ("no-file-part", {"files": {"name": (None, "x")}}, "missing_file"),
    ("file-under-other-field", {"files": {"upload": ("d.jsonl", b'{"text": "a"}')}}, "missing_file"),
    ("file-as-plain-field", {"data": {"file": '{"text": "a"}'}, "files": {"other": ("x", b"")}}, "missing_file"),
    ("two-files", {"files": [("file", ("a.jsonl", b'{"text": "a"}')), ("file", ("b.jsonl", b'{"text": "b"}'))]},
     None),
]


@pytest.mark.parametrize(("kwargs", "code"), [c[1:] for c in FORM_CASES], ids=[c[0] for c in FORM_CASES])
def test_malformed_multipart_is_refused(client, session, kwargs: dict, code: str | None) -> None:
    before = stored_counts(session)
    assert_refused(client.post("/api/datasets", **kwargs), code)
    assert stored_counts(session) == before


@pytest.mark.parametrize("query", ["", "?filename=", "?filename=../", "?filename=%00"],
                         ids=["no-name", "empty-name", "dir-name", "nul-name"])
def test_raw_body_without_a_usable_name_is_refused(client, session, query: str) -> None:
    before = stored_counts(session)
    assert_refused(client.post(f"/api/datasets{query}", content=_jsonl({"text": "a"})), "missing_filename", None,
                    "file")
    assert stored_counts(session) == before


# (id, how it is sent, client file name, stored name); httpx percent-escapes control characters in multipart
# names, so those go through the raw-body ?filename= path where they arrive as real bytes.
TRAVERSAL = [
    ("dot-dot-slash", "form", "../../etc/passwd.jsonl", "passwd.jsonl"),
    ("absolute", "form", "/etc/passwd.jsonl", "passwd.jsonl"),
    ("backslashes", "form", "..\\..\\windows\\win.jsonl", "win.jsonl"),
    ("drive-letter", "form", "C:\\Users\\x\\data.jsonl", "data.jsonl"),
    ("nul-byte", "raw", "../a\x00b.jsonl", "ab.jsonl"),
    ("crlf", "raw", "./../ok\r\n.jsonl", "ok.jsonl"),
]


@pytest.mark.parametrize(("via", "filename", "stored"), [t[1:] for t in TRAVERSAL], ids=[t[0] for t in TRAVERSAL])
def test_path_traversal_names_are_stored_as_a_bare_basename(client, via: str, filename: str, stored: str) -> None:
    body = _jsonl({"text": "a"})
    if via == "form":
        response = client.post("/api/datasets", files={"file": (filename, body)}, data={"name": filename})
    else:
        response = client.post("/api/datasets", params={"filename": filename, "name": filename}, content=body)
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["filename"] == stored
    assert "\x00" not in dataset["name"] and "/" not in dataset["filename"]


def test_formula_cells_are_kept_for_training_but_neutralised_in_the_preview(client) -> None:
    body = b"prompt,completion\n\"=cmd|' /C calc'!A0\",+1\n@SUM(A1),-2 degrees\n"
    response = client.post("/api/datasets", files={"file": ("f.csv", body)})
    assert response.status_code == 201, response.text
    preview = response.json()["preview"]
    assert preview[0] == {"prompt": "'=cmd|' /C calc'!A0", "completion": "'+1"}
    assert preview[1] == {"prompt": "'@SUM(A1)", "completion": "'-2 degrees"}
