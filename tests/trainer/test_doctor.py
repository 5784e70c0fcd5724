"""The dataset doctor on the tiny model: masks match the trainer's, truncation counts, every warning kind (unfilled
placeholders and a chat template's default system prompt among them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.default_system_model import DEFAULT_SYSTEM_PROMPT, with_default_system_prompt
from worker.trainer.data import IGNORE_INDEX, encode_record
from worker.trainer.doctor import analyze, histogram, row_problems
from worker.trainer.examples import default_system_prompt
from worker.trainer.placeholders import placeholders
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


@pytest.mark.parametrize("row, expected", [
    ({"text": "I am {{name}}, made by {{ author }}. Ask {{name}}."}, ["{{name}}", "{{ author }}"]),
    ({"messages": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "{{user.name}}"}]},
     ["{{user.name}}"]),
    ({"text": 'JSON: {"a": {"b": 1}} and {{"c": 2}}'}, []),
    ({"text": "def f(): return {x: {y}} if {name} else {{1}}"}, []),
    ({"prompt": "{{ 9lives }}", "completion": "{{}}"}, []),
])
def test_placeholders_are_jinja_style_names_not_braces(row: dict, expected: list[str]) -> None:
    assert placeholders(row) == expected


# identity.json's kind of rows, as the studio stores alpaca: no system turn.
IDENTITY = [
    chat("hi", "Hello! I am {{name}}, an AI assistant developed by {{author}}."),
    chat("Who are you?", "I am {{name}}."),
    chat("What is two plus two?", "Four."),
    chat("Who made you?", "{{author}} made me."),
    chat("Your name?", "My name is {{name}}."),
    chat("Hello", "Hi, I am {{name}}."),
]


def test_unfilled_placeholders_are_named_counted_and_fixed(tokenizer) -> None:
    warning = codes(analyze(IDENTITY, tokenizer, max_seq_length=512))["unfilled_placeholders"]
    assert warning["count"] == 5 and warning["rows"] == [1, 2, 4, 5, 6]
    assert warning["placeholders"] == [{"text": "{{name}}", "count": 4, "rows": [1, 2, 5]},
                                       {"text": "{{author}}", "count": 2, "rows": [1, 4]}]
    message = warning["message"]
    assert message.startswith("5 rows contain template placeholders that were never filled in")
    assert "{{name}} in 4 rows (e.g. rows 1, 2, 5); {{author}} in 2 rows (e.g. rows 1, 4)" in message
    assert "Replace {{name}} and {{author}} before uploading, e.g. sed -e 's/{{name}}/NAME/g' " \
           "-e 's/{{author}}/AUTHOR/g'" in message


def test_identity_json_placeholders(tokenizer, shared_datasets: Path) -> None:
    from app.core.datasets import iter_canonical

    rows = list(iter_canonical(shared_datasets / "identity.json", "json", "alpaca"))
    warning = codes(analyze(rows, tokenizer, max_seq_length=512))["unfilled_placeholders"]
    counts = {p["text"]: p["count"] for p in warning["placeholders"]}
    assert counts == {"{{name}}": 77, "{{author}}": 60} and warning["count"] == 85


@pytest.fixture(scope="module")
def smol_tokenizer(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny tokenizer with SmolLM2's chat template, which inserts a default system prompt."""
    return load_tokenizer_from(str(with_default_system_prompt(tiny_model, tmp_path_factory.mktemp("smol") / "m")))


def test_the_default_system_prompt_is_found_by_rendering(smol_tokenizer, tokenizer) -> None:
    assert default_system_prompt(smol_tokenizer) == DEFAULT_SYSTEM_PROMPT
    assert default_system_prompt(tokenizer) is None  # plain ChatML writes no system turn of its own


@pytest.mark.parametrize("template, expected", [
    ("{% if messages[0]['role'] == 'system' %}{{ '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
     "{% else %}{{ '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.<|im_end|>\n' }}{% endif %}"
     "{% for m in messages if m['role'] != 'system' %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
     "'<|im_end|>\n' }}{% endfor %}", "You are Qwen, created by Alibaba Cloud."),
    # Llama 3.1 style: a date header in every system turn, the conversation's system text after it.
    ("{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set messages = messages[1:] %}"
     "{% else %}{% set sys = '' %}{% endif %}{{ '<|system|>Today Date: 26 Jul 2024\n\n' + sys + '<|end|>' }}"
     "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}", None),
    # Gemma style: the system text joins the first user turn; nothing when there is none.
    ("{% if messages[0]['role'] == 'system' %}{% set p = messages[0]['content'] + '\n\n' %}"
     "{% set messages = messages[1:] %}{% else %}{% set p = '' %}{% endif %}{% for m in messages %}"
     "{{ '<turn>' + m['role'] + '\n' + (p if loop.first else '') + m['content'] + '<end>\n' }}{% endfor %}", None),
    # Templates that refuse a system turn insert none either.
    ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
     "{{ m['content'] }}{% endfor %}", None),
])
def test_default_system_prompt_of_other_template_styles(tiny_model: Path, template: str,
                                                        expected: str | None) -> None:
    tokenizer = load_tokenizer_from(str(tiny_model))
    tokenizer.chat_template = template
    assert default_system_prompt(tokenizer) == expected


def test_doctor_warns_of_the_default_system_prompt(smol_tokenizer) -> None:
    rows = [*IDENTITY[:3], chat("Who are you?", "I am Ada.", system="You are Ada.")]
    result = analyze(rows, smol_tokenizer, max_seq_length=512)
    warning = codes(result)["default_system_prompt"]
    assert warning["count"] == 3 and warning["rows"] == [1, 2, 3]  # row 4 brings its own system turn
    assert f'"{DEFAULT_SYSTEM_PROMPT}"' in warning["message"]
    assert "set data.system_prompt (for example to the identity your data teaches) to replace it" in warning["message"]
    assert result["default_system_prompt"] == DEFAULT_SYSTEM_PROMPT and result["system_prompt"] is None
    shown = "".join(s["text"] for s in result["examples"][0]["segments"])
    assert shown.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n")


def test_a_system_prompt_replaces_the_default_and_is_not_trained(smol_tokenizer) -> None:
    result = analyze(IDENTITY[:3], smol_tokenizer, max_seq_length=512, system_prompt="You are Ada, made by Lab.")
    assert "default_system_prompt" not in codes(result)
    assert result["system_prompt"] == "You are Ada, made by Lab."
    assert result["default_system_prompt"] == DEFAULT_SYSTEM_PROMPT
    segments = result["examples"][2]["segments"]
    assert "".join(s["text"] for s in segments).startswith("<|im_start|>system\nYou are Ada, made by Lab.<|im_end|>")
    assert "".join(s["text"] for s in segments if s["trained"]) == "Four.<|im_end|>\n"
    assert DEFAULT_SYSTEM_PROMPT not in "".join(s["text"] for e in result["examples"] for s in e["segments"])


def test_a_system_prompt_does_not_apply_without_a_chat_template(smol_tokenizer) -> None:
    rows = [{"prompt": "Q: who?\nA:", "completion": " Ada"}, {"prompt": "Q: hi\nA:", "completion": " Hello"}]
    result = analyze(rows, smol_tokenizer, max_seq_length=64, system_prompt="You are Ada.")
    warning = codes(result)["system_prompt_ignored"]
    assert warning["count"] == 2 and "system prompt is not applied to them" in warning["message"]
    assert "You are Ada." not in "".join(s["text"] for s in result["examples"][0]["segments"])
    assert "default_system_prompt" not in codes(analyze(rows, smol_tokenizer, max_seq_length=64))
