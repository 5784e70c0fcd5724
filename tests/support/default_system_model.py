"""A tiny model whose chat template, like SmolLM2's, inserts a default system prompt into chats without one."""

from __future__ import annotations

import shutil
from pathlib import Path

DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# SmolLM2-135M-Instruct's chat_template.jinja, as shipped.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def with_default_system_prompt(model_dir: Path, dest: Path) -> Path:
    """A copy of a tiny model folder (tests/support/tiny_model.py) at `dest` with SmolLM2's chat template."""
    shutil.copytree(model_dir, dest)
    (dest / "chat_template.jinja").write_text(SMOLLM2_TEMPLATE, encoding="utf-8")
    return dest
