"""Will this adapter load in the server it is meant for? vLLM's rules for a LoRA adapter, checked on the files
(adapter_config.json and the safetensors header), and the exact command that serves it.

vLLM (vllm/lora/peft_helper.py, vllm/config/lora.py) refuses an adapter with modules_to_save, with DoRA, or with
a bias other than "none", and its --max-lora-rank takes one of a few values (16 by default): a higher rank needs the
flag. It applies LoRA to linear layers; embedding and output-head adapters are not served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.core.adapter_import import LORA_TENSOR, Tensor

VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_RANK = 16
# The linear layers vLLM's Llama-family models take LoRA on (packed as qkv_proj and gate_up_proj inside vLLM).
VLLM_LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
NOT_LINEAR = {"embed_tokens", "lm_head", "wte", "wpe"}


@dataclass
class Readiness:
    """One server's verdict: ready, or the problems that would make it refuse the adapter; notes; the command."""

    server: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""

    @property
    def ready(self) -> bool:
        return not self.problems


def vllm(config: dict[str, Any], tensors: list[Tensor], base_ref: str, served_name: str) -> Readiness:
    """vLLM's checks on a LoRA adapter, and `vllm serve … --enable-lora --lora-modules name=path` for it."""
    verdict = Readiness("vllm")
    if config.get("use_dora"):
        verdict.problems.append("vLLM does not serve DoRA adapters (use_dora): merge the adapter into the base and "
                                "serve the merged model, or train without lora.use_dora.")
    if config.get("modules_to_save"):
        verdict.problems.append(f"vLLM serves no modules_to_save ({', '.join(map(str, config['modules_to_save']))}"
                                "): train without them, or merge and serve the merged model.")
    if config.get("bias", "none") != "none":
        verdict.problems.append(f"vLLM serves LoRA without trained biases (bias is {config.get('bias')!r}): train "
                                "with lora.bias none.")
    kinds = {m.group("module").rsplit(".", 1)[-1] for t in tensors if (m := LORA_TENSOR.fullmatch(t.name))}
    if kinds & NOT_LINEAR:
        verdict.problems.append("vLLM applies LoRA to linear layers only, not to "
                                f"{', '.join(sorted(kinds & NOT_LINEAR))}.")
    if other := sorted(kinds - VLLM_LINEAR - NOT_LINEAR):
        verdict.notes.append(f"{', '.join(other)}: not a Llama-family linear layer; vLLM serves it only where the "
                             "model's vLLM implementation lists it among its LoRA modules.")
    rank = max([config.get("r", 0), *(config.get("rank_pattern") or {}).values()])
    flag = ""
    if rank > VLLM_RANKS[-1]:
        verdict.problems.append(f"Its rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_RANKS[-1]}).")
    elif rank > VLLM_DEFAULT_RANK:
        needed = next(r for r in VLLM_RANKS if r >= rank)
        flag = f" --max-lora-rank {needed}"
        verdict.notes.append(f"Its rank {rank} is above vLLM's default of {VLLM_DEFAULT_RANK}: serve with "
                             f"--max-lora-rank {needed}.")
    if config.get("use_rslora"):
        verdict.notes.append("rsLoRA (scale alpha / sqrt(r)): vLLM reads use_rslora from adapter_config.json.")
    folder = f"/path/to/{served_name}"
    verdict.command = (f"vllm serve {base_ref} --enable-lora --lora-modules {served_name}={folder}{flag}"
                       if verdict.ready else "")
    if verdict.ready:
        verdict.notes.append(f"Unzip the version into {folder} (its adapter_config.json and "
                             "adapter_model.safetensors); requests then name the model "
                             f"{served_name!r}. Tokenizer and chat template are the base's.")
    return verdict
