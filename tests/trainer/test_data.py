"""Tokenisation with loss masks (and a run's system prompt), truncation, splitting and padding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from tests.support.default_system_model import DEFAULT_SYSTEM_PROMPT, with_default_system_prompt
from worker.planning.spec import MAX_SYSTEM_PROMPT, DataSpec
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


@pytest.fixture(scope="module")
def smol_tokenizer(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny tokenizer with SmolLM2's chat template, which inserts a default system prompt."""
    return AutoTokenizer.from_pretrained(with_default_system_prompt(tiny_model, tmp_path_factory.mktemp("smol") / "m"))


@pytest.mark.parametrize("train_on, trained", [
    ("completions", "I am Ada.<|im_end|>\n"),
    ("all", "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\nI am Ada.<|im_end|>\n"),
])
def test_system_prompt_is_the_system_turn_and_never_trained(tmp_path, make_spec, smol_tokenizer, train_on: str,
                                                            trained: str) -> None:
    rows = [{"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Ada."}]},
            {"messages": [{"role": "system", "content": "Be terse."}, *CHAT[1:3]]}]
    spec = make_spec(data={"path": str(_write(tmp_path / "d.jsonl", rows)), "system_prompt": "You are Ada.\n",
                           "train_on": train_on})
    assert spec.data.system_prompt == "You are Ada."
    first, second = encode_dataset(spec, smol_tokenizer, ListSink())
    text = smol_tokenizer.decode(first["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are Ada.<|im_end|>\n<|im_start|>user\n")
    assert DEFAULT_SYSTEM_PROMPT not in text
    system = len(smol_tokenizer("<|im_start|>system\nYou are Ada.<|im_end|>\n")["input_ids"])
    assert set(first["labels"][:system]) == {IGNORE_INDEX}
    assert _labelled_text(smol_tokenizer, first) == trained
    # A conversation with its own system turn keeps it, and gets no second one.
    assert smol_tokenizer.decode(second["input_ids"]).count("<|im_start|>system\n") == 1
    assert "You are Ada." not in smol_tokenizer.decode(second["input_ids"])


def test_without_a_system_prompt_the_template_default_is_context(tmp_path, make_spec, smol_tokenizer) -> None:
    rows = [{"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Ada."}]}]
    (example,) = encode_dataset(make_spec(data={"path": str(_write(tmp_path / "d.jsonl", rows))}), smol_tokenizer,
                                ListSink())
    assert DEFAULT_SYSTEM_PROMPT in smol_tokenizer.decode(example["input_ids"])
    assert _labelled_text(smol_tokenizer, example) == "I am Ada.<|im_end|>\n"


def test_system_prompt_leaves_text_and_prompt_completion_alone(tokenizer) -> None:
    record = {"prompt": "Q: two plus two?\nA:", "completion": " four"}
    plain = encode_record(tokenizer, "prompt", record, "completions")
    assert encode_record(tokenizer, "prompt", record, "completions", "You are Ada.") == plain
    text = {"text": "hello there"}
    assert encode_record(tokenizer, "text", text, "all", "Be Ada.") == encode_record(tokenizer, "text", text, "all")


@pytest.mark.parametrize("value, expected", [(None, None), ("  ", None), (" Be terse. ", "Be terse.")])
def test_system_prompt_spec_field(value: str | None, expected: str | None) -> None:
    assert DataSpec(path="d.jsonl", system_prompt=value).system_prompt == expected


def test_system_prompt_is_bounded() -> None:
    DataSpec(path="d.jsonl", system_prompt="x" * MAX_SYSTEM_PROMPT)
    with pytest.raises(ValidationError, match="at most 4000 characters"):
        DataSpec(path="d.jsonl", system_prompt="x" * (MAX_SYSTEM_PROMPT + 1))
