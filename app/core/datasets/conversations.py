"""Chat rows (OpenAI "messages" and ShareGPT "conversations") checked and turned into canonical messages.

Turn order rules, lenient where chat templates cope and strict where training would be meaningless:
a system message may only come first; the first other turn is the user's; a tool message follows an
assistant turn (its call) or another tool message; there is at least one assistant turn. Consecutive user
or assistant turns are allowed (an assistant may speak and then call a tool), and so is a final user turn.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from app.core.datasets.checks import array, mapping, optional_text, require, text, wrong_type
from app.core.datasets.problems import DatasetProblem

Message = dict[str, str]
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
SPOKEN = ("user", "assistant")  # roles whose turns must hold text


def messages_row(row: dict[str, Any], line: int) -> dict[str, list[Message]]:
    """An OpenAI chat row as canonical messages; tool calls become the assistant's JSON content."""
    items = array(require(row, "messages", "messages", line), "messages", line)
    messages = [_message(item, f"messages[{index}]", line) for index, item in enumerate(items)]
    check_order([message["role"] for message in messages], lambda index: f"messages[{index}].role", "messages", line)
    return {"messages": messages}


def sharegpt_row(row: dict[str, Any], line: int) -> dict[str, list[Message]]:
    """A ShareGPT row as canonical messages; a top-level "system" becomes the first message, "tools" is ignored."""
    items = array(require(row, "conversations", "conversations", line), "conversations", line)
    system = optional_text(row, "system", line)
    messages = [{"role": "system", "content": system}] if system else []
    offset = len(messages)
    messages += [_turn(item, f"conversations[{index}]", line) for index, item in enumerate(items)]

    def field_of(index: int) -> str:
        return "system" if index < offset else f"conversations[{index - offset}].from"

    check_order([message["role"] for message in messages], field_of, "conversations", line)
    return {"messages": messages}


def _turn(item: Any, field: str, line: int) -> Message:
    """One ShareGPT turn ({from, value})."""
    item = mapping(item, field, line)
    speaker = text(require(item, "from", f"{field}.from", line), f"{field}.from", line, required=True)
    if speaker not in SHAREGPT_ROLES:
        raise _unknown_role(speaker, f"{field}.from", line, ", ".join(SHAREGPT_ROLES))
    role = SHAREGPT_ROLES[speaker]
    value = text(require(item, "value", f"{field}.value", line), f"{field}.value", line, required=role in SPOKEN)
    return {"role": role, "content": value}


def _message(item: Any, field: str, line: int) -> Message:
    """One OpenAI message ({role, content, tool_calls?})."""
    item = mapping(item, field, line)
    role = text(require(item, "role", f"{field}.role", line), f"{field}.role", line, required=True)
    if role not in ROLES:
        raise _unknown_role(role, f"{field}.role", line, ", ".join(ROLES))
    calls = _tool_calls(item.get("tool_calls"), f"{field}.tool_calls", line) if role == "assistant" else ""
    content = _content(item, f"{field}.content", line, required=role in SPOKEN and not calls)
    return {"role": role, "content": "\n".join(part for part in (content, calls) if part)}


def _content(item: dict[str, Any], field: str, line: int, *, required: bool) -> str:
    """Message content: a string or a list of text parts; absent or null only beside tool calls."""
    if "content" not in item and not required:
        return ""
    value = require(item, "content", field, line)
    if value is None and not required:
        return ""
    if isinstance(value, list):
        value = "".join(_text_part(part, f"{field}[{index}]", line) for index, part in enumerate(value))
    return text(value, field, line, required=required)


def _text_part(part: Any, field: str, line: int) -> str:
    """One {"type": "text", "text": ...} content part; images and audio are not supported."""
    part = mapping(part, field, line)
    if part.get("type") != "text":
        raise DatasetProblem(
            "unsupported_content",
            f"Line {line}: {field} is a {part.get('type')!r} part; only text parts are supported.",
            line=line,
            field=f"{field}.type",
        )
    return text(require(part, "text", f"{field}.text", line), f"{field}.text", line, required=False)


def _tool_calls(value: Any, field: str, line: int) -> str:
    """Tool calls as the JSON text ShareGPT uses for function_call turns ({name, arguments}, or a list)."""
    if value is None:
        return ""
    calls = [_tool_call(call, f"{field}[{index}]", line) for index, call in enumerate(array(value, field, line))]
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False) if calls else ""


def _tool_call(call: Any, field: str, line: int) -> dict[str, Any]:
    """One {"function": {"name", "arguments"}} call; string arguments are parsed when they are JSON."""
    function = mapping(
        require(mapping(call, field, line), "function", f"{field}.function", line), f"{field}.function", line
    )
    name = text(
        require(function, "name", f"{field}.function.name", line), f"{field}.function.name", line, required=True
    )
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        # Text that is not JSON is kept as the dataset gave it; the model still learns to emit it.
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    elif not isinstance(arguments, dict):
        raise wrong_type(arguments, "an object or a JSON string", f"{field}.function.arguments", line)
    return {"name": name, "arguments": arguments}


def _unknown_role(role: str, field: str, line: int, accepted: str) -> DatasetProblem:
    return DatasetProblem(
        "unknown_role", f"Line {line}: {field} is {role!r}; it must be one of {accepted}.", line=line, field=field
    )


def check_order(roles: list[str], field_of: Callable[[int], str], container: str, line: int) -> None:
    """Apply the turn order rules in this module's docstring."""
    for index, role in enumerate(roles):
        previous = roles[index - 1] if index else None
        if role == "system" and index > 0:
            raise _order(line, field_of(index), "a system message may only be the first message")
        if role != "system" and previous in (None, "system") and role != "user":
            raise _order(line, field_of(index), f"the conversation must start with a user turn, not {role}")
        if role == "tool" and previous not in ("assistant", "tool"):
            raise _order(line, field_of(index), "a tool result must follow an assistant turn (its tool call)")
    if "assistant" not in roles:
        raise DatasetProblem(
            "no_assistant_turn",
            f"Line {line}: {container} has no assistant turn, so there is nothing to learn; "
            "each conversation needs at least one user turn answered by the assistant.",
            line=line,
            field=container,
        )


def _order(line: int, field: str, rule: str) -> DatasetProblem:
    return DatasetProblem("role_order", f"Line {line}: {field} is out of order: {rule}.", line=line, field=field)
