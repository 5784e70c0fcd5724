"""Watch it learn: a few prompts answered greedily by the base model once, then by the adapter at each evaluation
and at the end, within a budget of training time; reported as `Samples` (worker.planning.reports)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from worker.evaluation.scorers import ScorerError, contains, exact, regex_match
from worker.planning.reports import Log, Sample, SampleKind, Samples, SkipReason
from worker.planning.spec import RunSpec
from worker.trainer.examples import ensure_chat_template, with_system_prompt
from worker.trainer.sinks import ReportSink

MAX_SHOWN = 2000  # characters of a prompt or reference kept for the run page
SCORERS = {"exact": exact, "contains": contains, "regex": regex_match}  # SamplePrompt.scorer: the evaluation's own


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model reads it (token ids) and as a person reads it, with its reference answer (and, for a
    given prompt, the scorer that checks an answer against it)."""

    ids: list[int]
    text: str
    reference: str | None
    scorer: str | None = None

    def score(self, output: str) -> float | None:
        """1 or 0 by the prompt's scorer; None without one, or where it cannot judge (a pattern past its time)."""
        if self.scorer is None or self.reference is None:
            return None
        example = {"reference": self.reference, "pattern": self.reference, "index": 0}
        try:
            return SCORERS[self.scorer](output, example)
        except ScorerError:
            return None


def _rendered(tokenizer: Any, kind: str, messages: list[dict], system_prompt: str | None) -> list[int]:
    """The ids of a conversation up to the assistant's turn, rendered as training renders it."""
    if kind != "messages":
        return list(tokenizer(messages[-1]["content"], add_special_tokens=True)["input_ids"])
    text = tokenizer.apply_chat_template(with_system_prompt(messages, system_prompt), tokenize=False,
                                         add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _from_record(tokenizer: Any, kind: str, record: dict[str, Any], system_prompt: str | None) -> Prompt | None:
    """A held-out record as a prompt and its reference: the last assistant answer, a completion, a text's end."""
    if kind == "prompt":
        ids = list(tokenizer(record["prompt"], add_special_tokens=True)["input_ids"])
        return Prompt(ids, record["prompt"], record["completion"])
    if kind == "text":
        ids = list(tokenizer(record["text"], add_special_tokens=True)["input_ids"])
        if len(ids) < 2:
            return None
        cut = len(ids) // 2  # the model continues the first half; the second is the reference
        return Prompt(ids[:cut], tokenizer.decode(ids[:cut], skip_special_tokens=True),
                      tokenizer.decode(ids[cut:], skip_special_tokens=True))
    messages = record["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if not last:
        return None
    context = messages[:last]
    asked = next((m["content"] for m in reversed(context) if m.get("role") == "user"), context[-1]["content"])
    return Prompt(_rendered(tokenizer, kind, context, system_prompt), asked, messages[last]["content"])


def choose_prompts(spec: RunSpec, tokenizer: Any, kind: str, held_out: list[dict[str, Any]]) -> list[Prompt]:
    """The spec's prompts, else the first usable held-out records (already in the split's seeded order)."""
    count, system_prompt = spec.samples.count, spec.data.system_prompt
    if kind == "messages":
        ensure_chat_template(tokenizer)
    if spec.samples.prompts:
        given = spec.samples.prompts[:count]
        return [Prompt(_rendered(tokenizer, kind, [{"role": "user", "content": p.prompt}], system_prompt),
                       p.prompt, p.expected, p.scorer) for p in given]
    chosen: list[Prompt] = []
    for record in held_out:
        if len(chosen) == count:
            break
        if (prompt := _from_record(tokenizer, kind, record, system_prompt)) is not None:
            chosen.append(prompt)
    return chosen


def _stop_ids(tokenizer: Any) -> list[int]:
    """EOS and, for chat templates, the end-of-turn marker: where a sampled answer ends."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    marker = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(marker, int) and marker != tokenizer.unk_token_id and marker not in ids:
        ids.append(marker)
    return ids


class Sampler:
    """Answers the prompts with a model as it stands (eval mode, no gradients, KV cache), then restores it."""

    def __init__(self, tokenizer: Any, prompts: list[Prompt], max_new_tokens: int, max_length: int,
                 bf16: bool = False) -> None:
        self.tokenizer, self.prompts, self.max_new_tokens = tokenizer, prompts, max_new_tokens
        self.bf16 = bf16  # the trainer's autocast: the frozen weights may be stored in bfloat16
        self.max_prompt = max(8, max_length)
        self.stop_ids = _stop_ids(tokenizer)

    def answers(self, model: Any) -> list[str]:
        """Greedy answers to every prompt (its last max_length tokens) in one left-padded batch: a decoding step
        costs about the same for a few rows as for one."""
        device = next(model.parameters()).device
        rows = [p.ids[-self.max_prompt:] for p in self.prompts]
        width, pad = max(len(r) for r in rows), self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                             do_sample=False, use_cache=True, eos_token_id=self.stop_ids, pad_token_id=pad)
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]

    def run(self, model: Any, should_stop: Callable[[], bool]) -> list[Sample] | None:
        """Every prompt's answer (each given an equal share of the batch's time), or None if a stop was asked for."""
        if should_stop():
            return None
        was_training = model.training
        device = next(model.parameters()).device.type
        model.eval()
        try:
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16):
                started = time.monotonic()
                outputs = self.answers(model)
                each = round((time.monotonic() - started) / len(outputs), 4)
        finally:
            model.train(was_training)
        return [Sample(index=i, prompt=p.text[:MAX_SHOWN], output=output, seconds=each, score=p.score(output),
                       reference=None if p.reference is None else p.reference[:MAX_SHOWN])
                for i, (p, output) in enumerate(zip(self.prompts, outputs, strict=True))]


class SamplesCallback(TrainerCallback):
    """Samples the base model at the start, the adapter after each evaluation while the budget allows, and the
    final adapter (finish()); each round goes to the sink as a Samples report.

    `stopped`: whether a stop was asked for, as the trainer's StopCallback latched it at a step boundary (during
    training it is the one reader of the stop signal); finish() is given the signal itself.
    """

    def __init__(self, sink: ReportSink, sampler: Sampler, budget: float, stopped: Callable[[], bool]) -> None:
        self.sink, self.sampler, self.budget, self.stopped = sink, sampler, budget, stopped
        self.started = time.monotonic()
        self.sampling_s = 0.0
        self.first_step = 0
        self.last_round: tuple[int, list[Sample]] | None = None  # the adapter's newest answers and their step
        self.round_s = 0.0  # the newest round's cost: the estimate of the next one's

    def train_s(self) -> float:
        """Training time of this attempt so far, sampling excluded."""
        return max(0.0, time.monotonic() - self.started - self.sampling_s)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.started, self.first_step = time.monotonic(), int(state.global_step)
        with model.disable_adapter():
            self._round(model, "base", 0)

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        step = int(state.global_step)
        if self.stopped() or (self.last_round is not None and self.last_round[0] == step):
            return  # stopping (finish() says so), or the weights have not moved since the last round
        if self.affordable(step, int(state.max_steps)):
            self._round(model, "eval", step)
        else:
            self._emit("eval", step, [], skipped="budget")

    def affordable(self, step: int, max_steps: int) -> bool:
        """Whether one more round, with the final one still to come, keeps sampling within the budget of the
        training time this attempt is heading for (extrapolated from its steps so far); a budget of 1 is none."""
        if self.budget >= 1:
            return True
        done = max(1, step - self.first_step)
        heading_for = self.train_s() / done * max(done, max_steps - self.first_step)
        return self.sampling_s + 2 * self.round_s <= self.budget * heading_for

    def finish(self, model: Any, step: int, should_stop: Callable[[], bool]) -> None:
        """The final adapter's answers: skipped under cancel (checked between prompts too), reused when the last
        round was at this step."""
        if self.stopped() or should_stop():
            self._emit("final", step, [], skipped="cancelled")
        elif self.last_round is not None and self.last_round[0] == step:
            self._emit("final", step, [s.model_copy(update={"seconds": 0.0}) for s in self.last_round[1]])
        else:
            self._round(model, "final", step, should_stop)

    def _round(self, model: Any, kind: SampleKind, step: int, should_stop: Callable[[], bool] | None = None) -> None:
        started = time.monotonic()
        samples = self.sampler.run(model, should_stop or self.stopped)
        seconds = time.monotonic() - started
        self.sampling_s += seconds
        if samples is None:
            self._emit(kind, step, [], skipped="cancelled")
            return
        self.round_s = seconds
        if kind != "base":
            self.last_round = (step, samples)
        self._emit(kind, step, samples, seconds=seconds)

    def _emit(self, kind: SampleKind, step: int, samples: list[Sample], skipped: SkipReason | None = None,
              seconds: float = 0.0) -> None:
        self.sink.emit(Samples(kind=kind, step=step, samples=samples, skipped=skipped, seconds=round(seconds, 4),
                               sampling_s=round(self.sampling_s, 4), train_s=round(self.train_s(), 4),
                               budget=self.budget, resumed_from=self.first_step))


def sampling(spec: RunSpec, tokenizer: Any, kind: str, held_out: list[dict[str, Any]], sink: ReportSink,
             stopped: Callable[[], bool], bf16: bool = False) -> SamplesCallback | None:
    """The run's sampling callback, or None when it samples nothing (count 0, or no prompt to ask).

    bf16: whether training runs under bfloat16 autocast (generation then does too)."""
    if spec.samples.count == 0:
        return None
    prompts = choose_prompts(spec, tokenizer, kind, held_out)
    if not prompts:
        sink.emit(Log(message="no samples during training: give samples.prompts, or hold out examples "
                      "(data.eval_fraction > 0)"))
        return None
    sampler = Sampler(tokenizer, prompts, spec.samples.max_new_tokens, spec.data.max_seq_length, bf16)
    return SamplesCallback(sink, sampler, spec.samples.budget, stopped)
