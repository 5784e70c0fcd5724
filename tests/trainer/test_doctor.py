"""The dataset doctor on the tiny model: masks match the trainer's, truncation counts, every warning kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.trainer.data import IGNORE_INDEX, encode_record
from worker.trainer.doctor import analyze, histogram, row_problems
from worker.trainer.tokenizers import load_tokenizer_from


@pytest.fixture
def tokenizer(tiny_model: Path):
    return load_tokenizer_from(str(tiny_model))


def chat(question: str, *answers: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    for i, answer in enumerate(answers):
        if i:
            messages.append({"role": "user", "content": "And then?"})
        messages.append({"role": "assistant", "content": answer})
    return {"messages": messages}


def codes(result: dict) -> dict[str, dict]:
    return {w["code"]: w for w in result["warnings"]}


def test_trained_segments_are_the_assistant_turns_and_end_of_turn(tokenizer) -> None:
    rows = [chat("What is two plus two?", "Four.", "Five minus one.", system="Be terse.")]
    result = analyze(rows, tokenizer, max_seq_length=512)
    segments = result["examples"][0]["segments"]
    trained = "".join(s["text"] for s in segments if s["trained"])
    assert trained == "Four.<|im_end|>\nFive minus one.<|im_end|>\n"
    assert "".join(s["text"] for s in segments) == tokenizer.apply_chat_template(rows[0]["messages"], tokenize=False)
    assert not any(s["cut"] for s in segments)


def test_doctor_masks_exactly_as_the_trainer_does(tokenizer) -> None:
    row = {"prompt": "Question: two plus two?\nAnswer:", "completion": " four"}
    example = encode_record(tokenizer, "prompt", row, "completions")
    result = analyze([row], tokenizer, max_seq_length=512)
    trained = [s["text"] for s in result["examples"][0]["segments"] if s["trained"]]
    assert trained == [tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX])]
    assert result["examples"][0]["tokens"] == len(example["input_ids"])
    assert result["warnings"] == []


def test_truncation_counts_and_histogram_sum(tokenizer) -> None:
    rows = [{"text": "hello " * n} for n in (1, 2, 3, 40, 60)]
    lengths = [len(encode_record(tokenizer, "text", r, "completions")["input_ids"]) for r in rows]
    limit = sorted(lengths)[2]
    result = analyze(rows, tokenizer, max_seq_length=limit)
    assert result["row_count"] == 5
    assert result["truncated_count"] == sum(n > limit for n in lengths) == 2
    assert result["truncated_share"] == pytest.approx(0.4)
    assert sum(result["lengths"]["counts"]) == result["row_count"]
    assert result["token_stats"]["max"] == max(lengths) and result["token_stats"]["min"] == min(lengths)
    assert result["examples"][4]["truncated"] and any(s["cut"] for s in result["examples"][4]["segments"])
    # Long texts lose their EOS to truncation: the doctor says so.
    assert codes(result)["no_eos"]["rows"] == [4, 5]


def test_histogram_bins_are_round_and_reach_the_limit() -> None:
    result = histogram([3, 10, 10, 97], limit=128)
    assert result["bin_width"] == 10 and result["edges"][-1] > 128
    assert sum(result["counts"]) == 4 and result["counts"][1] == 2
    assert len(result["edges"]) == len(result["counts"]) + 1


@pytest.mark.parametrize("row, expected", [
    ({"messages": [{"role": "user", "content": "hi"}]}, ["missing_assistant"]),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}, ["empty_assistant"]),
    ({"prompt": "hi", "completion": ""}, ["empty_assistant"]),
    ({"messages": [{"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "hi"}]}, ["role_order"]),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                   {"role": "assistant", "content": "c"}]}, ["role_order"]),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                   {"role": "assistant", "content": "c"}]}, ["role_order"]),
    (chat("hi", "Hello!", system="Be kind."), []),
    ({"text": "anything"}, []),
])
def test_row_problems(row: dict, expected: list[str]) -> None:
    assert row_problems(row) == expected


def test_each_warning_kind_from_a_crafted_dataset(tokenizer) -> None:
    good = chat("What is the capital of France?", "Paris.")
    rows = [
        good,
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                      {"role": "assistant", "content": "c"}]},
        good,
        good,
    ]
    found = codes(analyze(rows, tokenizer, max_seq_length=512))
    assert found["missing_assistant"]["rows"] == [2]
    assert found["missing_assistant"]["message"].startswith("1 conversation has no assistant turn")
    assert found["empty_assistant"]["rows"] == [3]
    assert found["role_order"]["rows"] == [4]
    assert found["duplicate_rows"] == {**found["duplicate_rows"], "rows": [5, 6], "count": 2}
    # ChatML ends turns with <|im_end|>; the tiny tokenizer's EOS is <|endoftext|>, which chats never contain.
    assert found["no_eos"]["count"] == 6 and "<|endoftext|>" in found["no_eos"]["message"]
    assert found["no_trained_tokens"]["rows"] == [2]
    assert all(w["message"] for w in found.values())


def test_warning_rows_are_capped_but_counted(tokenizer) -> None:
    rows = [{"text": "same"}] * 12
    duplicate = codes(analyze(rows, tokenizer, max_seq_length=64))["duplicate_rows"]
    assert duplicate["count"] == 11 and duplicate["rows"] == [2, 3, 4, 5, 6]


def test_only_the_first_examples_are_kept(tokenizer) -> None:
    rows = [{"text": f"number {i}"} for i in range(30)]
    result = analyze(rows, tokenizer, max_seq_length=64, examples=20)
    assert [e["row"] for e in result["examples"]] == list(range(1, 21))
    assert result["row_count"] == 30 and result["truncated_count"] == 0
