"""Reading a person's YAML without letting it grow: a size cap, then the parser's events scanned for anchors and
aliases, explicit tags, deep nesting and too many nodes, all before a single object is built.

Why not a library: PyYAML and ruamel.yaml have no switch that refuses aliases or bounds nesting, and strictyaml
(which refuses aliases) reads every scalar as a string, refuses flow style (`[q_proj, v_proj]`) and still builds
its round-trip tree first. So the guard below runs on PyYAML's own event stream (libyaml's parser where it is
built in), which is streamed: a refused document costs one pass over at most `max_bytes`, never its expansion.
Torch-free: the web, the CLI and the trainer all read specs through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What a run spec needs is far below these: a RunSpec is 3 levels deep and ~60 values long.
DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_NODES = 5000
_OPENERS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSERS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


@dataclass(frozen=True)
class YamlLimits:
    """How much YAML one read may take: bytes of text, levels of nesting, values (scalars and collections)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_nodes: int = DEFAULT_MAX_NODES


class YamlRefused(Exception):
    """YAML the studio will not read, with a message a person can act on and, where known, the line and column."""

    def __init__(self, code: str, message: str, *, line: int | None = None, column: int | None = None,
                 kind: Literal["invalid", "too_large"] = "invalid") -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)
        self.code, self.message, self.line, self.column, self.kind = code, where + message, line, column, kind


def load(text: str | bytes, limits: YamlLimits = YamlLimits()) -> Any:
    """The one YAML document in `text` as plain data (dicts, lists, scalars), or YamlRefused."""
    _check_size(text, limits.max_bytes)
    try:
        _scan(yaml.parse(text, Loader=Loader), limits)
        return _build(text)
    except yaml.MarkedYAMLError as exc:
        raise _refused(exc) from None
    except yaml.YAMLError as exc:
        raise YamlRefused("invalid_yaml", f"this is not valid YAML: {_clip(str(exc))}") from None
    except ValueError as exc:  # an integer past Python's 4300-digit conversion limit
        too_long = "integer string conversion" in str(exc)
        problem = "an integer has more than 4300 digits" if too_long else _clip(str(exc))
        raise YamlRefused("invalid_yaml", f"a value cannot be read: {problem}") from None


def _build(text: str | bytes) -> Any:
    """The document as plain data, through the safe loader (what yaml.safe_load does, with libyaml's parser)."""
    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_file(path: Path, limits: YamlLimits = YamlLimits()) -> Any:
    """load() of a file, reading no more than the size cap allows (so a huge file is refused unread)."""
    with path.open("rb") as handle:
        data = handle.read(limits.max_bytes + 1)
        _check_size(data, limits.max_bytes, os.fstat(handle.fileno()).st_size)
    try:
        return load(data.decode("utf-8"), limits)
    except UnicodeDecodeError as exc:
        raise YamlRefused("invalid_yaml", f"the file is not UTF-8 text (byte {exc.start})") from None


def _check_size(text: str | bytes, max_bytes: int, known_size: int = 0) -> None:
    # A character is at least one byte, so a long string is refused before it is encoded.
    size = len(text) if isinstance(text, bytes) or len(text) > max_bytes else len(text.encode("utf-8"))
    size = max(size, known_size)
    if size > max_bytes:
        raise YamlRefused("yaml_too_large", f"the YAML is {_size(size)}; the limit is {_size(max_bytes)} "
                          "(a run spec is a few hundred bytes)", kind="too_large")


def _scan(events: Iterator[yaml.Event], limits: YamlLimits) -> None:
    """Refuse, at the first offending event, what could make the document grow or recurse when built."""
    depth = nodes = documents = 0
    for event in events:
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _at(event, "more_documents", "give one YAML document (no second '---')")
        elif isinstance(event, yaml.AliasEvent):
            raise _at(event, "yaml_alias", f"aliases (*{_clip(event.anchor, 40)}) are not allowed; "
                      "write the value out in full")
        elif isinstance(event, yaml.NodeEvent):
            _check_node(event, limits)
            nodes += 1
            depth += isinstance(event, _OPENERS)
            if nodes > limits.max_nodes:
                raise _at(event, "yaml_too_many_values", f"more than {limits.max_nodes} values")
            if depth > limits.max_depth:
                raise _at(event, "yaml_too_deep", f"nested more than {limits.max_depth} levels deep")
        elif isinstance(event, _CLOSERS):
            depth -= 1


def _check_node(event: yaml.NodeEvent, limits: YamlLimits) -> None:
    """Refuse anchors (the other half of an alias) and explicit tags (a spec is plain data)."""
    if event.anchor is not None:
        raise _at(event, "yaml_anchor", f"anchors (&{_clip(event.anchor, 40)}) are not allowed; "
                  "write each value out in full")
    # The parser sets a tag only where the text wrote one ('!' alone just means "a string").
    tag = getattr(event, "tag", None)
    if tag is not None and tag != "!":
        raise _at(event, "yaml_tag", f"tags ({_clip(tag, 40)}) are not allowed; a spec is plain values")


def _at(event: yaml.Event, code: str, message: str) -> YamlRefused:
    mark = event.start_mark
    return YamlRefused(code, message, line=mark.line + 1, column=mark.column + 1)


def _refused(exc: yaml.MarkedYAMLError) -> YamlRefused:
    """A parser or constructor error, named by its line and column, its text clipped."""
    mark = exc.problem_mark or exc.context_mark
    problem = " ".join(p for p in (exc.context, exc.problem) if p) or "unreadable"
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return YamlRefused("invalid_yaml", f"this is not valid YAML: {_clip(problem)}", line=line, column=column)


def _clip(text: str, limit: int = 200) -> str:
    """At most `limit` characters of a text that may come from the input."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} bytes"
