"""Greedy continuations and teacher-forced next-token choices, from a PyTorch model and from llama.cpp (through
llama-cpp-python), on the same prompt token ids — what an export's verification compares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.generation.engine import stop_token_ids


def prompt_ids(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Each prompt as a user turn through the chat template, as the studio's generation renders it."""
    out = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        out.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return out


def torch_greedy(model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Each prompt's greedy continuation (stopping at the model's stop tokens, which are kept)."""
    import torch

    stops = stop_token_ids(model, tokenizer)
    out = []
    with torch.inference_mode():
        for ids in prompts:
            generated: list[int] = []
            past = None
            step = torch.tensor([ids])
            for _ in range(max_new_tokens):
                result = model(input_ids=step, past_key_values=past, use_cache=True)
                past = result.past_key_values
                token = int(result.logits[0, -1].float().argmax())
                generated.append(token)
                if token in stops:
                    break
                step = torch.tensor([[token]])
            out.append(generated)
    return out


def torch_top1(model: Any, prompts: list[list[int]], continuations: list[list[int]]) -> list[list[int]]:
    """Given prompt + continuation, the model's most likely token at each continuation position."""
    import torch

    out = []
    with torch.inference_mode():
        for ids, cont in zip(prompts, continuations, strict=True):
            logits = model(input_ids=torch.tensor([ids + cont])).logits[0]
            out.append(logits[len(ids) - 1:len(ids) + len(cont) - 1].float().argmax(-1).tolist())
    return out


class LlamaCpp:
    """A GGUF model (and optionally a GGUF LoRA) loaded by llama.cpp; greedy on the CPU, deterministic."""

    def __init__(self, model_path: Path, lora_path: Path | None = None, n_ctx: int = 2048) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None, n_ctx=n_ctx,
                         logits_all=True, n_threads=None, verbose=False, seed=0)

    def greedy(self, prompts: list[list[int]], max_new_tokens: int, stops: set[int]) -> list[list[int]]:
        """Each prompt's greedy continuation, fed the same token ids as the PyTorch side (no re-tokenising)."""
        out = []
        for ids in prompts:
            self.llm.reset()
            generated: list[int] = []
            for token in self.llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                           reset=True):
                generated.append(int(token))
                if token in stops or len(generated) >= max_new_tokens:
                    break
            out.append(generated)
        return out

    def top1(self, prompts: list[list[int]], continuations: list[list[int]]) -> list[list[int]]:
        """Given prompt + continuation, llama.cpp's most likely token at each continuation position."""
        out = []
        for ids, cont in zip(prompts, continuations, strict=True):
            self.llm.reset()
            self.llm.eval(ids + cont)
            scores = self.llm.scores[len(ids) - 1:len(ids) + len(cont) - 1]
            out.append([int(row.argmax()) for row in scores])
        return out

    def close(self) -> None:
        self.llm.close()
