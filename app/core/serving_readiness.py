"""Will this adapter load in the server it is meant for? vLLM's rules for a LoRA adapter, checked on the files
(adapter_config.json and the safetensors header), and the exact command that serves it.

Beside it SGLang, TGI and llama.cpp's server, where their rules differ.

vLLM (vllm/lora/peft_helper.py, vllm/config/lora.py) refuses an adapter with modules_to_save, with DoRA, or with
a bias other than "none", and its --max-lora-rank takes one of a few values (16 by default): a higher rank needs the
flag. It applies LoRA to linear layers; embedding and output-head adapters are not served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.core.adapter_import import LORA_TENSOR, Tensor
from worker.export.inputs import gguf_file_names  # torch-free: the names the exports write

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


def adapted_modules(tensors: list[Tensor]) -> set[str]:
    """The kinds of module the adapter's LoRA tensors adapt (q_proj, embed_tokens, …)."""
    return {m.group("module").rsplit(".", 1)[-1] for t in tensors if (m := LORA_TENSOR.fullmatch(t.name))}


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
    kinds = adapted_modules(tensors)
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


def sglang(config: dict[str, Any], tensors: list[Tensor], base_ref: str, served_name: str) -> Readiness:
    """SGLang's LoRA serving (S-LoRA/Punica kernels: x·A·B per adapter, on linear layers) and its command.
    It reads r, lora_alpha, target_modules and rank_pattern/alpha_pattern from adapter_config.json; DoRA's
    magnitude vectors, modules_to_save and trained biases have no place in its kernels."""
    verdict = Readiness("sglang")
    if config.get("use_dora"):
        verdict.problems.append("SGLang's LoRA kernels apply A·B only, not DoRA's magnitude vectors (use_dora): "
                                "export the merged model and serve that, or train without lora.use_dora.")
    if config.get("modules_to_save"):
        verdict.problems.append(f"SGLang loads no modules_to_save ({', '.join(map(str, config['modules_to_save']))}"
                                "): merge and serve the merged model.")
    if config.get("bias", "none") != "none":
        verdict.problems.append(f"SGLang serves LoRA without trained biases (bias is {config.get('bias')!r}).")
    kinds = adapted_modules(tensors)
    if kinds & NOT_LINEAR:
        verdict.problems.append("SGLang applies LoRA to linear layers, not to "
                                f"{', '.join(sorted(kinds & NOT_LINEAR))}.")
    if config.get("use_rslora"):
        verdict.notes.append("rsLoRA: SGLang scales by lora_alpha / r; check that your SGLang release reads "
                             "use_rslora, or serve the merged model (the merge applies alpha / sqrt(r)).")
    folder = f"/path/to/{served_name}"
    verdict.command = (f"python -m sglang.launch_server --model-path {base_ref} --enable-lora "
                       f"--lora-paths {served_name}={folder}" if verdict.ready else "")
    if verdict.ready:
        verdict.notes.append(f"Requests name the adapter with \"lora_path\": \"{served_name}\" (native API) or as "
                             "the model of its OpenAI-compatible routes; --max-lora-rank and --lora-target-modules "
                             "are inferred from the adapters given at start.")
    return verdict


def tgi(config: dict[str, Any], tensors: list[Tensor], base_ref: str, served_name: str) -> Readiness:
    """Text Generation Inference (text_generation_server/adapters/lora.py, utils/adapter.py): it reads r,
    lora_alpha and use_rslora from adapter_config.json and loads only the lora_A/lora_B weights of the layers it
    maps (Llama-family q/k/v/o, gate/up/down, lm_head) from .safetensors files. Everything else is skipped
    without a word, so an adapter that needs more would load and answer wrongly: those are refused here."""
    verdict = Readiness("tgi")
    if config.get("use_dora"):
        verdict.problems.append("TGI loads lora_A/lora_B only and would serve a DoRA adapter without its magnitude "
                                "vectors (use_dora), answering wrongly: export the merged model and serve that.")
    if config.get("modules_to_save"):
        verdict.problems.append(f"TGI skips modules_to_save ({', '.join(map(str, config['modules_to_save']))}) "
                                "without a word: merge and serve the merged model.")
    if config.get("bias", "none") != "none":
        verdict.problems.append(f"TGI skips trained biases (bias is {config.get('bias')!r}): train with lora.bias "
                                "none, or serve the merged model.")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        verdict.problems.append("TGI scales every layer by the one lora_alpha and r of adapter_config.json; this "
                                "adapter's rank_pattern/alpha_pattern gives some layers another scale: serve the "
                                "merged model.")
    kinds = adapted_modules(tensors)
    if embeddings := sorted(kinds & (NOT_LINEAR - {"lm_head"})):
        verdict.problems.append(f"TGI applies LoRA to linear layers and lm_head, not to {', '.join(embeddings)}.")
    if other := sorted(kinds - VLLM_LINEAR - NOT_LINEAR):
        verdict.notes.append(f"{', '.join(other)}: not a Llama-family layer TGI maps; it would skip it unless its "
                             "model's implementation names it.")
    if config.get("use_rslora"):
        verdict.notes.append("rsLoRA: TGI reads use_rslora from adapter_config.json (scale alpha / sqrt(r)).")
    folder = f"/path/to/{served_name}"
    verdict.command = (f"text-generation-launcher --model-id {base_ref} --lora-adapters {served_name}={folder}"
                       if verdict.ready else "")
    if verdict.ready:
        verdict.notes.append(f"Requests name the adapter with \"adapter_id\": \"{served_name}\" in their "
                             "parameters (or as the model on its OpenAI-compatible route); the tokenizer and chat "
                             "template are the base's.")
    return verdict


def llama_cpp(config: dict[str, Any], tensors: list[Tensor], base_name: str, served_name: str) -> Readiness:
    """llama.cpp's server takes a GGUF LoRA on a GGUF base: what llama.cpp's convert_lora_to_gguf.py refuses
    (any tensor other than lora_A/lora_B: DoRA's magnitudes, modules_to_save, biases; embedding adapters that
    are not mergekit's) and what it cannot express (one lora_alpha for every layer)."""
    verdict = Readiness("llama.cpp")
    if config.get("use_dora"):
        verdict.problems.append("llama.cpp's LoRA converter takes lora_A/lora_B tensors only, not DoRA's "
                                "magnitude vectors: export gguf (the merged model) instead.")
    if config.get("modules_to_save"):
        verdict.problems.append("llama.cpp's LoRA converter refuses modules_to_save tensors: export gguf (the "
                                "merged model) instead.")
    if config.get("bias", "none") != "none":
        verdict.problems.append("llama.cpp's LoRA converter refuses trained biases: export gguf (merged) instead.")
    if config.get("alpha_pattern"):
        verdict.problems.append("A GGUF LoRA holds one lora_alpha for every layer; this adapter's alpha_pattern "
                                "gives some layers another: export gguf (merged) instead.")
    if config.get("use_rslora"):
        verdict.notes.append("rsLoRA: llama.cpp scales by alpha / r, so the studio's gguf_lora export writes "
                             "alpha × sqrt(r) (the same scale, alpha / sqrt(r)); the export's verification checks it.")
    names = gguf_file_names(served_name, base_name)
    verdict.command = f"llama-server -m {names['base']} --lora {names['lora']}" if verdict.ready else ""
    if verdict.ready:
        verdict.notes.append("Both files come from this version's gguf_lora export (the base as f16 GGUF and the "
                             "adapter as a GGUF LoRA, verified in llama.cpp); or run the gguf export's merged file "
                             f"alone: llama-server -m {names['q8_0']}.")
    return verdict
