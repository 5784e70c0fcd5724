"""Incremental decoding and stop strings, on the tiny model's byte-level tokenizer."""

from __future__ import annotations

from pathlib import Path

from worker.generation.text import Detokenizer, StopText


def test_detokenizer_never_splits_a_character(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = " café 日本語 ✓ the cat"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detokenizer = Detokenizer(tokenizer, tokenizer("hello", add_special_tokens=False)["input_ids"])
    pieces = [detokenizer.add(token) for token in ids]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) + detokenizer.flush() == text


def test_stop_text_holds_back_what_may_start_a_stop_string() -> None:
    text = StopText(("END", "##"))
    assert text.feed("hello E") == "hello "  # "E" may start "END"
    assert text.feed("N") == ""
    assert text.feed("x #") == "ENx "
    assert text.feed("#more") == ""
    assert text.stopped and text.text == "hello ENx "


def test_stop_text_flushes_what_it_held_when_the_sequence_ends_otherwise() -> None:
    text = StopText(("stop here",))
    assert text.feed("a stop") == "a "
    assert text.flush() == "stop"
    assert not text.stopped
