"""Peak memory, time and trainable parameters of a run, worked out from config.json numbers alone (no torch).

The web process uses it to size a run before launch. The CPU memory constants were calibrated against measured peak
RSS of short runs on this project's CPU machine (benchmarks/estimator_accuracy.py prints the comparison). Time comes
from the speed the chosen worker measured at its start where it did (DeviceProfile.measured), as a point and a range,
start-up included (benchmarks/estimate_error.py compares it with real runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from worker.planning.device_profiles import DeviceProfile
from worker.planning.kernels import LOSS_CHUNK_ELEMENTS
from worker.planning.spec import RunSpec

GB = 2**30  # GiB, as workers report device memory
REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
# Bytes saved for backward per token and layer of a Llama block with LoRA on every linear, per unit of the hidden
# (h), intermediate (i) and attention (2 q_dim + 2 kv_dim) widths, counted with saved_tensors_hooks on SmolLM2
# (benchmarks/estimator_accuracy.py): with bf16 autocast (or a bf16 GPU), and in fp32. They include the boolean
# dropout masks (worker/trainer/dropout.py) and the bf16 copies autocast makes of every linear's input. A 4-bit
# linear saves its packed weight, not its input (bitsandbytes' MatMul4Bit), hence QLoRA's smaller counts.
ACT_BYTES = {("lora", True): (30.5, 10.2, 3.0), ("qlora", True): (27.8, 9.0, 3.0),
             ("lora", False): (41.7, 17.1, 6.0), ("qlora", False): (38.0, 15.6, 6.0)}
LORA_STATE_BYTES = 16  # fp32 weight + grad + two AdamW moments
# The loss builds logits a chunk at a time (worker/trainer/loss.py): one chunk's fp32 logits and their bf16
# gradient at most, the head's weight in the compute dtype, and the hidden states' gradient.
LOSS_CHUNK_COPIES = 1.5
NF4_BYTES = 0.5 + 4 / 64  # 4-bit codes plus one fp32 absmax per 64-weight block (less with double quant)
# Runtime floor: on the CPU the RSS of torch + transformers + the Trainer stack (measured 0.45-0.5 GiB);
# on a GPU the CUDA context and cuBLAS workspaces.
CPU_RUNTIME_GB, GPU_RUNTIME_GB = 0.5, 1.0
# Measured peak RSS over counted saved bytes on the CPU, by the trainer's heap allocator (fitted on SmolLM2,
# 128-2048 tokens a step: benchmarks/estimator_accuracy.py --allocator system|tcmalloc|jemalloc). glibc's malloc
# keeps the blocks forward and backward free resident, fragmented across their many sizes; tcmalloc and jemalloc
# reuse them, and the peak is about the live tensors' (least squares: tcmalloc 0.88/0.97, jemalloc 0.94/1.02).
CPU_ACT_SCALE = {("lora", "system"): 1.5, ("qlora", "system"): 1.65,
                 ("lora", "caching"): 0.95, ("qlora", "caching"): 1.0}
USABLE_SHARE = 0.9  # leave room for the OS / fragmentation before calling it a fit
# CPU throughput: effective FLOP/s of LoRA training (flops_per_token x tokens/s), by method and bf16 autocast,
# measured on the demo model with 512-2048 tokens a step on a 2-core EPYC (Zen 5, AVX512-BF16) with tcmalloc:
# 3.1-3.3e11 in bf16, 1.4e11 with bf16 switched off. Other CPUs differ by their cores and vector units.
# Only a fallback now: a worker measures its own speed at its start (worker.trainer.calibrate, DeviceProfile.measured).
# On this project's shared 2-core Xeon (AMX) QLoRA ran 7-12x slower than these figures; calibrating there measured
# 1.7-1.9e11 with one math thread, and 0.65-2.3e10 with two threads while other processes kept the cores busy.
CPU_FLOPS = {("lora", True): 3.1e11, ("qlora", True): 3.0e11, ("lora", False): 1.4e11, ("qlora", False): 1.4e11}
# The time range around the point estimate, as factors: a measured speed carries the error of carrying it from the
# small calibration model to the run's (benchmarks/estimate_error.py), widened by the calibration's own step spread
# up to SPREAD_LIMITS (on a busy 2-core machine one step ran 11x faster than the median); a datasheet or fallback
# figure can be off several times over.
MEASURED_RANGE, UNMEASURED_RANGE, SPREAD_LIMITS = (0.7, 1.5), (0.5, 3.0), (0.5, 2.0)
# Seconds before the first step and after the last that tokens/s leaves out: the trainer's imports and set-up (a
# calibrated worker measured its own; else these), plus loading the base, per parameter (read, cast to bf16 or
# quantised to 4 bits; measured on SmolLM2 on the CPU, assumed on a GPU).
STARTUP_S = {"cpu": 8.0, "cuda": 20.0}
LOAD_S_PER_PARAM = {("cpu", "lora"): 2.5e-8, ("cpu", "qlora"): 8e-8, ("cuda", "lora"): 1e-9, ("cuda", "qlora"): 3e-9}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only (Llama-style) config.json that fix its size."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False
    head_dim: int | None = None
    attention_bias: bool = False
    mlp_bias: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """Read a Hugging Face config dict (its text_config for multimodal wrappers); ValueError if incomplete."""
        config = config.get("text_config") or config
        missing = [k for k in REQUIRED if not isinstance(config.get(k), int)]
        if missing:
            raise ValueError(f"config.json lacks {', '.join(missing)}")
        heads = config["num_attention_heads"]
        return cls(config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], heads,
                   config.get("num_key_value_heads") or heads, config["vocab_size"],
                   bool(config.get("tie_word_embeddings", False)), config.get("head_dim"),
                   bool(config.get("attention_bias", False)), bool(config.get("mlp_bias", False)))

    @property
    def q_dim(self) -> int:
        """Width of the query projection (heads × head_dim)."""
        return self.num_attention_heads * (self.head_dim or self.hidden_size // self.num_attention_heads)

    @property
    def kv_dim(self) -> int:
        """Width of the key and value projections (grouped-query attention shares them)."""
        return self.num_key_value_heads * (self.head_dim or self.hidden_size // self.num_attention_heads)

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder block."""
        h, i = self.hidden_size, self.intermediate_size
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def block_linear_params(self) -> int:
        """Weights (and biases) of all linear layers of one block."""
        weights = sum(a * b for a, b in self.linears().values())
        biases = (self.q_dim + 2 * self.kv_dim + self.hidden_size) * self.attention_bias
        return weights + biases + (2 * self.intermediate_size + self.hidden_size) * self.mlp_bias

    def embedding_params(self) -> int:
        """Input embeddings plus the output head when it is not tied to them."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def total_params(self) -> int:
        """Every parameter: embeddings, blocks (linears + two norms), final norm, untied head."""
        blocks = self.num_hidden_layers * (self.block_linear_params() + 2 * self.hidden_size)
        return self.embedding_params() + blocks + self.hidden_size


def lora_params(spec: RunSpec, shape: ModelShape) -> int:
    """Trainable LoRA parameters: r × (in + out) for every targeted linear (all-linear excludes lm_head)."""
    targets = spec.lora.resolved_targets()
    names = list(shape.linears()) if targets == "all-linear" else list(targets)
    linears = shape.linears()
    per_block = sum(spec.lora.r * sum(linears[n]) for n in names if n in linears)
    extra = {"lm_head": (shape.hidden_size, shape.vocab_size), "embed_tokens": (shape.vocab_size, shape.hidden_size)}
    outside = sum(spec.lora.r * sum(extra[n]) for n in names if n in extra)
    return shape.num_hidden_layers * per_block + outside


@dataclass
class Recommendation:
    """One change to the spec and what it would give."""

    change: str
    description: str
    peak_memory_gb: float
    fits: bool
    time_s: float | None = None


@dataclass
class Estimate:
    """Peak memory (with its parts), time, the verdict and the parameter counts of a spec on a device."""

    available: bool
    device: dict[str, Any]
    reason: str | None = None
    peak_memory_gb: float = 0.0
    breakdown: dict[str, float] = field(default_factory=dict)
    usable_memory_gb: float = 0.0
    fits: bool = False
    time_s: float | None = None  # start-up plus tokens / tokens_per_second: the run's wall time, best guess
    time_low_s: float | None = None
    time_high_s: float | None = None
    startup_s: float = 0.0
    measured: bool = False  # the speed is the device's own calibration, not a datasheet figure
    tokens: int | None = None
    tokens_per_second: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    trainable_share: float = 0.0
    recommended_method: str | None = None
    recommendations: list[Recommendation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the API's response body)."""
        return asdict(self)


def unavailable(reason: str, device: DeviceProfile) -> Estimate:
    """An estimate that cannot be made, and why."""
    return Estimate(available=False, device=asdict(device), reason=reason)


def _half_precision(device: DeviceProfile) -> bool:
    """Whether matmuls run in 16 bits: bf16 autocast on Ampere+ GPUs and AMX/AVX512-BF16 CPUs, fp16 autocast on
    older GPUs (worker.trainer.model.precision); fp32 only on CPUs without bf16."""
    return device.bf16 or device.kind == "cuda"


def _weights_bytes(spec: RunSpec, shape: ModelShape, device: DeviceProfile) -> float:
    """The frozen base: 16-bit on a GPU (bf16, or fp16 without it) and fp32 on the CPU for LoRA; 4-bit blocks plus
    fp32 embeddings/norms for QLoRA."""
    total = shape.total_params()
    if spec.method == "lora" and device.kind == "cuda":
        return total * 2
    if spec.method == "lora":  # bf16 CPUs store the frozen block linears in bf16 (model.bf16_block_linears)
        blocks = shape.num_hidden_layers * shape.block_linear_params()
        return blocks * (2 if device.bf16 else 4) + (total - blocks) * 4
    quantised = shape.num_hidden_layers * shape.block_linear_params()
    # prepare_model_for_kbit_training upcasts everything left unquantised (embeddings, head, norms) to fp32.
    # (The fp32 file pages read for quantising are released: model.release_checkpoint_pages.)
    return quantised * NF4_BYTES + (total - quantised) * 4


def _activation_bytes(spec: RunSpec, shape: ModelShape, device: DeviceProfile) -> float:
    """Tensors kept for backward: every layer's, or with checkpointing each layer's input plus one layer's."""
    tokens = spec.training.per_device_batch_size * spec.data.max_seq_length
    h_bytes, i_bytes, attention_bytes = ACT_BYTES[spec.method, _half_precision(device)]
    sdpa = 2 * shape.q_dim + 2 * shape.kv_dim  # q, k, v and the attention output
    per_layer = h_bytes * shape.hidden_size + i_bytes * shape.intermediate_size + attention_bytes * sdpa
    if spec.training.gradient_checkpointing:  # each layer's fp32 input, plus one layer being recomputed
        per_token = shape.num_hidden_layers * 4 * shape.hidden_size + per_layer
    else:
        per_token = shape.num_hidden_layers * per_layer
    if device.kind != "cpu":
        return tokens * per_token
    heap = "system" if device.allocator == "system" else "caching"
    return tokens * per_token * CPU_ACT_SCALE[spec.method, heap]


def _loss_bytes(tokens: int, shape: ModelShape) -> float:
    """The chunked loss: one chunk of fp32 logits (+ its gradient), the head in bf16, the hidden states' gradient."""
    chunk = min(tokens * shape.vocab_size, LOSS_CHUNK_ELEMENTS)
    return chunk * 4 * LOSS_CHUNK_COPIES + shape.vocab_size * shape.hidden_size * 2 + tokens * shape.hidden_size * 4


def memory_breakdown(spec: RunSpec, shape: ModelShape, device: DeviceProfile) -> dict[str, float]:
    """Peak memory in GB by part: weights, adapters (+grads, AdamW), activations, logits, runtime."""
    tokens = spec.training.per_device_batch_size * spec.data.max_seq_length
    parts = {
        "weights": _weights_bytes(spec, shape, device),
        "adapters": lora_params(spec, shape) * LORA_STATE_BYTES,
        "activations": _activation_bytes(spec, shape, device),
        "logits": _loss_bytes(tokens, shape),
        "runtime": (CPU_RUNTIME_GB if device.kind == "cpu" else GPU_RUNTIME_GB) * GB,
    }
    return {k: round(v / GB, 3) for k, v in parts.items()}


def flops_per_token(spec: RunSpec, shape: ModelShape) -> float:
    """Training FLOPs per token: 4 × params for a frozen base (no weight grads), +2 × with recomputation."""
    matmul_params = shape.num_hidden_layers * shape.block_linear_params() + shape.vocab_size * shape.hidden_size
    passes = 4 + (2 if spec.training.gradient_checkpointing else 0)
    # Causal attention scores and weighted sums: half of 2 × 2 × seq × q_dim per layer, three passes.
    attention = 3 * 2 * shape.num_hidden_layers * spec.data.max_seq_length * shape.q_dim
    return passes * matmul_params + attention


def tokens_per_second(spec: RunSpec, shape: ModelShape, device: DeviceProfile) -> float:
    """Expected training throughput on the device: its measured speed for the method, else a datasheet figure."""
    measured = device.measured.get(spec.method)
    if measured is not None:
        return measured.flops / flops_per_token(spec, shape)
    if device.kind == "cpu":
        flops = CPU_FLOPS[spec.method, device.bf16]
    else:
        # One GPU per job (a multi-GPU worker lends each job one: worker/jobs/gpu_slots.py), whatever the host has.
        # 4-bit layers dequantise every matmul's weight: QLoRA runs at roughly 70 % of LoRA's speed.
        flops = device.flops * (0.7 if spec.method == "qlora" else 1.0)
    return flops / flops_per_token(spec, shape)


def startup_seconds(spec: RunSpec, shape: ModelShape, device: DeviceProfile) -> float:
    """Seconds a run spends outside its steps: the trainer's start-up (measured where calibrated), loading the base."""
    measured = device.measured.get(spec.method)
    kind = "cuda" if device.kind == "cuda" else "cpu"
    base = measured.startup_s if measured is not None else STARTUP_S[kind]
    return base + shape.total_params() * LOAD_S_PER_PARAM[kind, spec.method]


def time_range(seconds: float, method: str, device: DeviceProfile) -> tuple[float, float]:
    """(low, high) around a point estimate: MEASURED_RANGE widened by the calibration's step spread (within
    SPREAD_LIMITS), else UNMEASURED_RANGE."""
    measured = device.measured.get(method)
    if measured is None:
        return seconds * UNMEASURED_RANGE[0], seconds * UNMEASURED_RANGE[1]
    low, high = min(max(measured.low, SPREAD_LIMITS[0]), 1.0), max(min(measured.high, SPREAD_LIMITS[1]), 1.0)
    return seconds * MEASURED_RANGE[0] * low, seconds * MEASURED_RANGE[1] * high


def run_tokens(spec: RunSpec, dataset_tokens: int | None) -> int | None:
    """Tokens the run will process: max_steps × batch × accumulation × GPUs × sequence, or the training split ×
    epochs."""
    t = spec.training
    if t.max_steps > 0:  # an upper bound: rows shorter than max_seq_length are padded only to the batch's longest
        return (t.max_steps * t.per_device_batch_size * t.gradient_accumulation_steps * spec.resources.gpus
                * spec.data.max_seq_length)
    if dataset_tokens is None:
        return None
    return int(dataset_tokens * (1 - spec.data.eval_fraction) * t.num_epochs)


def estimate(spec: RunSpec, arch: ModelShape, device: DeviceProfile, dataset_tokens: int | None) -> Estimate:
    """Peak memory, time, verdict, parameter counts and the alternatives worth trying for `spec` on `device`."""
    result = _measure(spec, arch, device, dataset_tokens)
    result.recommended_method, result.recommendations = _advice(spec, arch, device, dataset_tokens, result)
    return result


def _measure(spec: RunSpec, arch: ModelShape, device: DeviceProfile, dataset_tokens: int | None) -> Estimate:
    breakdown = memory_breakdown(spec, arch, device)
    peak, usable = round(sum(breakdown.values()), 2), round(device.memory_gb * USABLE_SHARE, 2)
    speed, tokens = tokens_per_second(spec, arch, device), run_tokens(spec, dataset_tokens)
    trainable, total = lora_params(spec, arch), arch.total_params()
    startup = startup_seconds(spec, arch, device)
    # Several GPUs (DDP on one host) share the tokens; only the LoRA weights' gradients cross between them, a few MB
    # a step, so the scaling is taken as linear.
    seconds = startup + tokens / (speed * spec.resources.gpus) if tokens is not None else None
    low, high = time_range(seconds, spec.method, device) if seconds is not None else (None, None)
    return Estimate(available=True, device=asdict(device), peak_memory_gb=peak, breakdown=breakdown,
                    usable_memory_gb=usable, fits=peak <= usable, tokens=tokens, tokens_per_second=round(speed, 1),
                    time_s=_round(seconds), time_low_s=_round(low), time_high_s=_round(high),
                    startup_s=round(startup, 1), measured=spec.method in device.measured,
                    trainable_params=trainable, total_params=total, trainable_share=trainable / total)


def _round(seconds: float | None) -> float | None:
    return round(seconds, 1) if seconds is not None else None


def _alternatives(spec: RunSpec) -> list[tuple[str, str, RunSpec]]:
    """(change, description, changed spec) for each single change that saves memory or time."""
    t, out = spec.training, []
    other = "lora" if spec.method == "qlora" else "qlora"
    why = ("4-bit base: about a quarter of the weight memory, ~30 % slower" if other == "qlora"
           else "full-precision base: faster and exact, needs more memory")
    out.append((f"method={other}", f"Switch to {'QLoRA' if other == 'qlora' else 'LoRA'} ({why}).",
                _with(spec, method=other)))
    if t.per_device_batch_size > 1:
        batch = max(1, t.per_device_batch_size // 2)
        out.append((f"training.per_device_batch_size={batch}",
                    f"Halve the batch to {batch} and double gradient accumulation (same effective batch).",
                    _smaller_batch(spec, batch)))
    if spec.data.max_seq_length > 256:
        seq = spec.data.max_seq_length // 2
        out.append((f"data.max_seq_length={seq}", f"Truncate examples at {seq} tokens (check how many are longer).",
                    _with(spec, data={"max_seq_length": seq})))
    if not t.gradient_checkpointing:
        out.append(("training.gradient_checkpointing=true",
                    "Recompute activations in the backward pass: much less activation memory, ~30 % slower.",
                    _with(spec, training={"gradient_checkpointing": True})))
    return out


def _smaller_batch(spec: RunSpec, batch: int) -> RunSpec:
    """`spec` with a smaller batch and more accumulation, so the effective batch stays (about) the same."""
    t = spec.training
    accumulation = max(1, t.gradient_accumulation_steps * t.per_device_batch_size // batch)
    return _with(spec, training={"per_device_batch_size": batch, "gradient_accumulation_steps": accumulation})


def _with(spec: RunSpec, **changes: Any) -> RunSpec:
    """A copy of `spec` with top-level values or section fields replaced."""
    data = spec.model_dump()
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return RunSpec.model_validate(data)


def _advice(spec: RunSpec, arch: ModelShape, device: DeviceProfile, dataset_tokens: int | None,
            current: Estimate) -> tuple[str, list[Recommendation]]:
    """The method to prefer (LoRA when it fits: faster, no quantisation error) and the alternatives."""
    recs = []
    for change, description, changed in _alternatives(spec):
        est = _measure(changed, arch, device, dataset_tokens)
        recs.append(Recommendation(change, description, est.peak_memory_gb, est.fits, est.time_s))
    if not current.fits:
        combined = _with(_smaller_batch(spec, 1), method="qlora", training={"gradient_checkpointing": True})
        est = _measure(combined, arch, device, dataset_tokens)
        recs.append(Recommendation("method=qlora, gradient_checkpointing=true, per_device_batch_size=1",
                                   "All of the memory savings at once (the smallest footprint this model allows).",
                                   est.peak_memory_gb, est.fits, est.time_s))
        recs = [r for r in recs if r.peak_memory_gb < current.peak_memory_gb]
        recs.sort(key=lambda r: (not r.fits, r.peak_memory_gb))
    lora, qlora = (_measure(_with(spec, method=m), arch, device, dataset_tokens) for m in ("lora", "qlora"))
    # LoRA when it fits (faster, exact); else QLoRA if the 4-bit base saves memory here (on the CPU it may not).
    prefer = "lora" if lora.fits or qlora.peak_memory_gb >= lora.peak_memory_gb else "qlora"
    return prefer, recs
