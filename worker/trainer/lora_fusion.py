"""A leaner training forward for PEFT's LoRA linears: one dropout and one A matmul per shared input, and the B
matmul, its scale and the residual add in one addmm.

PEFT's vanilla LoRA forward is `result + lora_B(lora_A(dropout(x))) * scaling`, for each wrapped layer alone:
  - q_proj, k_proj and v_proj read the same hidden states (gate_proj and up_proj too), yet each draws its own
    dropout mask over them and saves its own bf16 copy of the dropped input for backward. Here the layers that
    read one tensor share one mask and one matmul against their A weights stacked ([r_q + r_k + r_v] × hidden):
    one pass over the input instead of three, and one saved copy. (The masks are shared, so q, k and v see the
    same dropped features; each layer still has its own A and B, trained as before.)
  - PEFT casts the input to the LoRA weights' dtype (fp32) before dropout, and autocast rounds it back to bf16
    for the matmul: two passes over a tensor of the layer's input width, and the dropout on twice the bytes.
    Under autocast the input is left in the dtype it came in (the matmul would round it to that anyway).
  - `* scaling` and `+` are two more passes over the layer's output: addmm(result, h, (B·scaling)ᵀ) is one,
    and needs no defensive clone of the 4-bit layers' output (it does not write into it).
Which layers share an input is known per Llama-family block (SHARED_INPUTS) and checked at every call: a layer
called with another tensor than the one its group computed for computes its own, so no layer ever gets another's
input. Anything else — adapters disabled or merged, several adapters, DoRA, mixed-adapter batches — runs PEFT's
own forward.
"""

from __future__ import annotations

from typing import Any

import torch

from worker.trainer.per_input import PerInputParts

# Sibling layers of one block that Llama-family models call with the same input tensor.
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class SharedInput(PerInputParts):
    """The LoRA layers of one block that read the same tensor, and the A projection last computed for them."""

    def compute(self, x: torch.Tensor) -> list[torch.Tensor]:
        return _project(self.members, x)

    def lora_hidden(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        """dropout(x) @ A_layerᵀ, computed for every layer of the group at once when x is new."""
        return self.part(layer, x)


def _adapter(layer: Any) -> str:
    return layer.active_adapters[0]


def _project(layers: list[Any], x: torch.Tensor) -> list[torch.Tensor]:
    """One dropout of x and one matmul against the layers' stacked A weights, split per layer."""
    first = layers[0]
    name = _adapter(first)
    if not torch.is_autocast_enabled(x.device.type):
        x = first._cast_input_dtype(x, first.lora_A[name].weight.dtype)
    dropped = first.lora_dropout[name](x)
    weights = [layer.lora_A[_adapter(layer)].weight for layer in layers]
    stacked = weights[0] if len(weights) == 1 else torch.cat(weights)
    hidden = torch.nn.functional.linear(dropped, stacked)
    return list(hidden.split([w.shape[0] for w in weights], dim=-1))


def _fused_forward(layer: Any, group: SharedInput, original: Any) -> Any:
    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args or kwargs or not _plain(layer):
            return original(x, *args, **kwargs)
        result = layer.base_layer(x)
        hidden = group.lora_hidden(layer, x)
        name = _adapter(layer)
        up = layer.lora_B[name].weight * layer.scaling[name]
        if not torch.is_autocast_enabled(x.device.type):
            hidden = hidden.to(up.dtype)
            return torch.addmm(result.flatten(0, -2).to(up.dtype), hidden.flatten(0, -2), up.t()).view(
                result.shape).to(result.dtype)
        return torch.addmm(result.flatten(0, -2), hidden.flatten(0, -2), up.t()).view(result.shape)

    return forward


def _plain(layer: Any) -> bool:
    """One active vanilla LoRA adapter, applied unmerged: the case the fused forward computes."""
    adapters = layer.active_adapters
    return (not layer.disable_adapters and not layer.merged and len(adapters) == 1
            and adapters[0] in layer.lora_A and adapters[0] not in layer.lora_variant)


def _dropout_p(layer: Any) -> float:
    return float(getattr(layer.lora_dropout[_adapter(layer)], "p", 0.0))  # nn.Identity when the rate is 0


def _groups(parent: torch.nn.Module) -> list[list[Any]]:
    """The parent's plain LoRA children, those that read one input (same dropout rate) grouped, the rest alone."""
    from peft.tuners.lora import LoraLayer

    children = {name: child for name, child in parent.named_children()
                if isinstance(child, LoraLayer) and _plain(child)}
    groups: list[list[Any]] = []
    for names in SHARED_INPUTS:
        members = [children.pop(name) for name in names if name in children]
        if len({_dropout_p(layer) for layer in members}) == 1:
            groups.append(members)
        else:
            groups.extend([layer] for layer in members)
    return groups + [[child] for child in children.values()]


def fuse_lora_forward(model: torch.nn.Module) -> int:
    """Give every plain PEFT LoRA linear of `model` the fused forward above; returns how many layers got it."""
    fused = 0
    for parent in list(model.modules()):
        for members in _groups(parent):
            group = SharedInput(members)
            for layer in members:
                layer.forward = _fused_forward(layer, group, layer.forward)
                fused += 1
    return fused
