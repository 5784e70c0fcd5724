"""Tokenisation with loss masks, truncation, splitting and padding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from worker.trainer.data import IGNORE_INDEX, PaddingCollator, encode_dataset, encode_record, split
from worker.trainer.errors import TrainerError
from worker.trainer.sinks import ListSink

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, the capital of Italy."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    return AutoTokenizer.from_pretrained(tiny_model)


def _labelled_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX])


def test_chat_labels_exactly_every_assistant_turn(tokenizer) -> None:
    example = encode_record(tokenizer, "messages", {"messages": CHAT}, "completions")
    assert _labelled_text(tokenizer, example) == "Paris.<|im_end|>\nRome, the capital of Italy.<|im_end|>\n"
    assert len(example["labels"]) == len(example["input_ids"])


def test_train_on_all_labels_everything(tokenizer) -> None:
    example = encode_record(tokenizer, "messages", {"messages": CHAT}, "all")
    assert example["labels"] == example["input_ids"]


def test_prompt_completion_labels_completion_and_eos(tokenizer) -> None:
    record = {"prompt": "Question: two plus two?\nAnswer:", "completion": " four"}
    example = encode_record(tokenizer, "prompt", record, "completions")
    assert _labelled_text(tokenizer, example) == " four<|endoftext|>"
    assert example["input_ids"][-1] == tokenizer.eos_token_id


def test_template_less_tokenizer_gets_chatml(tiny_model: Path) -> None:
    from worker.trainer.data import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = None
    ensure_chat_template(tok)
    example = encode_record(tok, "messages", {"messages": CHAT}, "completions")
    assert _labelled_text(tok, example).startswith("Paris.<|im_end|>")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_truncation_drops_examples_without_trainable_tokens(tmp_path, make_spec, tokenizer) -> None:
    long_prompt = {"prompt": "word " * 100, "completion": "four"}
    data = _write(tmp_path / "d.jsonl", [long_prompt, {"prompt": "Q:", "completion": " four"}])
    sink = ListSink()
    examples = encode_dataset(make_spec(data={"path": str(data), "max_seq_length": 16}), tokenizer, sink)
    assert len(examples) == 1 and all(len(e["input_ids"]) <= 16 for e in examples)
    assert any("dropped 1" in e.get("message", "") for e in sink.events)


def test_errors_for_empty_and_untrainable_data(tmp_path, make_spec, tokenizer) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TrainerError) as err:
        encode_dataset(make_spec(data={"path": str(empty)}), tokenizer, ListSink())
    assert err.value.code == "empty_dataset"
    data = _write(tmp_path / "d.jsonl", [{"prompt": "word " * 100, "completion": "x"}])
    with pytest.raises(TrainerError) as err:
        encode_dataset(make_spec(data={"path": str(data), "max_seq_length": 16}), tokenizer, ListSink())
    assert err.value.code == "no_trainable_tokens"


def test_split_is_seeded_and_collator_pads_to_longest() -> None:
    examples = [{"input_ids": [i] * (i + 1), "labels": [i] * (i + 1)} for i in range(10)]
    train, held = split(examples, 0.2, seed=1)
    assert (len(train), len(held)) == (8, 2) and split(examples, 0.2, seed=1) == (train, held)
    batch = PaddingCollator(pad_token_id=99)(examples[:3])
    assert batch["input_ids"].tolist()[0] == [0, 99, 99]
    assert batch["labels"].tolist()[0] == [0, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["attention_mask"].sum().item() == 6
