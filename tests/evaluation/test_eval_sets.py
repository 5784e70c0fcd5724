"""Eval sets from dataset rows: the prompt and reference of each row, and the scorer fields a row may add."""

from __future__ import annotations

import pytest

from app.core.errors import StudioError
from app.core.eval_sets import example_of, extras_of, usable_examples


def test_a_chat_is_asked_without_its_final_answer_which_is_the_reference() -> None:
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"},
                         {"role": "assistant", "content": "Paris"}]}
    assert example_of(chat, 4) == {"index": 4, "messages": chat["messages"][:2], "reference": "Paris"}


def test_rows_without_a_prompt_are_left_out() -> None:
    rows = [{"text": "plain"}, {"prompt": "  ", "completion": "x"}, {"prompt": "q", "completion": "a"},
            {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}]
    assert usable_examples(rows, first=10) == [{"index": 12, "prompt": "q", "reference": "a"}]


def test_scorer_fields_are_read_and_a_bad_one_names_its_line_and_field() -> None:
    row = {"prompt": "q", "completion": "B", "choices": ["A", "B"], "pattern": "^B$", "schema": {"type": "string"}}
    assert extras_of(row, 3) == {"choices": ["A", "B"], "pattern": "^B$", "schema": {"type": "string"}}
    with pytest.raises(StudioError) as refused:
        extras_of({"prompt": "q", "completion": "B", "choices": "A or B"}, 7)
    assert refused.value.line == 7 and refused.value.field == "choices"
    assert refused.value.message.startswith('Line 7: "choices" must be a non-empty list')
