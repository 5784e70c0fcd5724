"""A tiny PEFT LoRA model whose adapters change the output, and its loss and gradients (the trainer's speed-lever
tests compare a changed forward against PEFT's own with these)."""

from __future__ import annotations

from pathlib import Path

import torch


def lora_model(tiny_model: Path, dropout: float = 0.0, targets: str | list[str] = "all-linear"):  # noqa: ANN201
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=targets))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: give it values, or the LoRA path would add nothing
            torch.nn.init.normal_(param, std=0.02)
    return model


def loss_and_grads(model, ids: torch.Tensor, autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # noqa: ANN001
    """The causal-LM loss on ids (bf16 autocast if asked) and the trainable parameters' gradients."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
