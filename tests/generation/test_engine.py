"""The engine on the tiny model: its decoding loop against transformers' and PEFT's own generate, mixed batches of
adapters and the base, seeds, stop strings, limits, refusals and cancellation."""

from __future__ import annotations

import time

import pytest
import torch

from app.core.generation.protocol import AdapterRef, BaseRef, GenerationRequest, ReplyEnd, ReplyError, ReplyStart
from worker.generation.engine import Arrival
from worker.generation.replies import CollectedReplies

pytestmark = pytest.mark.committed  # the engine reads the stored adapters on connections of its own
CHAT = ({"role": "user", "content": "What is the capital of France?"},)


def request(base: BaseRef, adapter: AdapterRef | None = None, prompt: str | None = "the cat and the dog",
            **sampling) -> GenerationRequest:  # noqa: ANN003
    sampling = {"max_tokens": 12, "temperature": 0.0, **sampling}
    inputs = {"prompt": prompt} if prompt is not None else {"messages": CHAT}
    return GenerationRequest(base=base, adapter=adapter, sampling=sampling, **inputs)


def run(engine, *requests: GenerationRequest, cancelled: set[str] = frozenset()) -> CollectedReplies:  # noqa: ANN001
    """Run the requests as one batch; the replies they got."""
    replies = CollectedReplies()
    replies.cancelled = set(cancelled)
    loaded = engine.base(requests[0].base)
    loaded.run([Arrival(r, time.monotonic()) for r in requests], replies)
    return replies


def reference(model, loaded, req: GenerationRequest) -> str:  # noqa: ANN001
    """What model.generate(do_sample=False) gives for the request's prompt, stopping where the engine stops."""
    seq = loaded.prepare(req)
    ids = torch.tensor([seq.prompt_ids])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=req.sampling.max_tokens, eos_token_id=sorted(loaded.decoder.stop_ids),
                         pad_token_id=loaded.tokenizer.pad_token_id)
    return loaded.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def plain(tiny_base: BaseRef):  # noqa: ANN201
    """A second copy of the base loaded the same way, for transformers' and PEFT's own generate."""
    from worker.generation.bases import load_base

    return load_base(tiny_base, "cpu", torch.float32)[0]


@pytest.mark.parametrize("chat", [False, True])
def test_greedy_base_output_equals_transformers_generate(engine, tiny_base, plain, chat) -> None:  # noqa: ANN001
    req = request(tiny_base, prompt=None if chat else "the cat and the dog")
    replies = run(engine, req)
    start, end = replies.events[req.id][0], replies.last(req.id)
    assert isinstance(start, ReplyStart) and start.adapter_sha256 is None
    if chat:
        assert start.rendered_prompt.endswith("<|im_start|>assistant\n")
    assert isinstance(end, ReplyEnd) and end.prompt_tokens == start.prompt_tokens
    assert replies.text(req.id) == reference(plain, engine.base(tiny_base), req)


def test_adapter_output_equals_peft_generate_and_differs_from_the_base(engine, tiny_base, adapters,  # noqa: ANN001
                                                                        adapter_dirs, plain) -> None:
    from peft import PeftModel

    base_req, adapter_req = request(tiny_base), request(tiny_base, adapters[0])
    replies = run(engine, adapter_req)
    assert replies.events[adapter_req.id][0].adapter_sha256 == adapters[0].sha256
    text = replies.text(adapter_req.id)
    assert text != run(engine, base_req).text(base_req.id)
    peft_model = PeftModel.from_pretrained(plain, adapter_dirs[0])
    try:
        assert text == reference(peft_model, engine.base(tiny_base), adapter_req)
    finally:
        peft_model.unload()  # give the module's copy of the base back as it was


def test_a_mixed_batch_gives_each_row_what_it_gives_alone(engine, tiny_base, adapters) -> None:  # noqa: ANN001
    mixed = [request(tiny_base, adapters[0]), request(tiny_base, prompt="hello"),
             request(tiny_base, adapters[1], prompt=None), request(tiny_base, adapters[0], prompt="one two three")]
    together = run(engine, *mixed)
    loaded = engine.base(tiny_base)
    assert loaded.batch_sizes[-1] == 4
    texts = [together.text(r.id) for r in mixed]
    assert texts == [run(engine, r).text(r.id) for r in mixed]
    assert len(set(texts[:2])) == 2


def test_the_same_seed_gives_the_same_text_alone_and_in_a_batch(engine, tiny_base, adapters) -> None:  # noqa: ANN001
    sampled = request(tiny_base, adapters[1], temperature=1.0, top_p=0.9, seed=1234, max_tokens=16)
    again = request(tiny_base, adapters[1], temperature=1.0, top_p=0.9, seed=1234, max_tokens=16)
    other_seed = request(tiny_base, adapters[1], temperature=1.0, top_p=0.9, seed=99, max_tokens=16)
    alone = run(engine, sampled).text(sampled.id)
    batch = run(engine, request(tiny_base, temperature=0.7, seed=5), again, other_seed, request(tiny_base))
    assert batch.text(again.id) == alone
    assert batch.text(other_seed.id) != alone


def test_a_stop_string_ends_the_text_before_it(engine, tiny_base) -> None:  # noqa: ANN001
    free = request(tiny_base, max_tokens=20)
    full = run(engine, free).text(free.id)
    stop = full[6:9]
    assert stop.strip() and full.find(stop) >= 1
    stopped = request(tiny_base, max_tokens=20, stop=(stop, "never in it"))
    replies = run(engine, stopped)
    assert replies.text(stopped.id) == full[:full.find(stop)]
    assert replies.last(stopped.id).finish_reason == "stop"


def test_max_tokens_ends_with_length(engine, tiny_base) -> None:  # noqa: ANN001
    req = request(tiny_base, max_tokens=7)
    end = run(engine, req).last(req.id)
    assert (end.finish_reason, end.completion_tokens) == ("length", 7)


def test_a_prompt_past_the_context_is_refused(engine, tiny_base) -> None:  # noqa: ANN001
    context = engine.base(tiny_base).context
    too_long = request(tiny_base, prompt="the cat " * context)
    with_max = request(tiny_base, prompt="the cat " * 100, max_tokens=context - 50)
    fine = request(tiny_base)
    replies = run(engine, too_long, with_max, fine)
    for req in (too_long, with_max):
        error = replies.last(req.id)
        assert isinstance(error, ReplyError) and (error.status, error.code) == (400, "context_length_exceeded")
        assert str(context) in error.message
        assert len(replies.events[req.id]) == 1
    assert str(context - 50) in replies.last(with_max.id).message
    assert isinstance(replies.last(fine.id), ReplyEnd)


def test_an_adapter_whose_files_are_gone_or_changed_is_not_found(engine, tiny_base, adapters) -> None:  # noqa: ANN001
    changed = AdapterRef(run_id=adapters[0].run_id, sha256="0" * 64)
    missing = AdapterRef(run_id=adapters[0].run_id, step=40, sha256=adapters[0].sha256)
    reqs = [request(tiny_base, changed), request(tiny_base, missing)]
    replies = run(engine, *reqs)
    for req in reqs:
        error = replies.last(req.id)
        assert isinstance(error, ReplyError) and (error.status, error.code) == (404, "adapter_not_found")


def test_cancel_stops_a_long_generation(engine, tiny_base) -> None:  # noqa: ANN001
    long = request(tiny_base, max_tokens=400)
    replies = CollectedReplies()
    loaded = engine.base(tiny_base)
    original = replies.flush

    def cancel_after_a_few_steps(watch=()) -> set[str]:  # noqa: ANN001
        if replies.flushes >= 4:
            replies.cancelled.add(long.id)
        return original(watch)

    replies.flush = cancel_after_a_few_steps
    loaded.run([Arrival(long, time.monotonic())], replies)
    end = replies.last(long.id)
    assert isinstance(end, ReplyEnd) and end.finish_reason == "cancelled"
    assert 0 < end.completion_tokens < 10


def test_the_default_dtype_is_bf16_where_native(tiny_base) -> None:  # noqa: ANN001
    from worker.generation.bases import inference_dtype, load_base
    from worker.trainer.model import supports_bf16

    model, _ = load_base(tiny_base, "cpu")
    assert model.dtype == inference_dtype("cpu") == (torch.bfloat16 if supports_bf16("cpu") else torch.float32)


def test_adapters_beyond_the_limit_unload_the_least_recently_used(resources, tmp_path, tiny_base,  # noqa: ANN001
                                                                  adapters) -> None:
    from worker.generation.adapters import NEEDED, AdapterCache
    from worker.generation.engine import Engine

    # A cache folder of its own: the session's is shared with every other service and job that exports adapters.
    cache = AdapterCache(resources.session_factory, tmp_path / "generation-cache")
    small = Engine("cpu", cache, max_adapters=1, dtype=torch.float32)
    first, second = request(tiny_base, adapters[0]), request(tiny_base, adapters[1])
    texts = [run(small, r).text(r.id) for r in (first, second)]
    loaded = small.base(tiny_base)
    assert list(loaded.adapters) == [adapters[1].sha256]
    assert list(loaded.decoder.model.peft_config) == [loaded.adapters[adapters[1].sha256]]
    again = first.model_copy(update={"id": "again"})
    assert run(small, again).text("again") == texts[0]
    now, later = loaded.admit([Arrival(r, 0.0) for r in (first, request(tiny_base), second)])
    assert [a.request for a in now] == [first, now[1].request] and [a.request for a in later] == [second]
    exported = sorted(p.name for p in (tmp_path / "generation-cache").iterdir())
    assert exported == sorted(a.sha256 for a in adapters)  # whole folders only: no temporary one left
    assert sorted(p.name for p in cache.folder(adapters[0]).iterdir()) == sorted(NEEDED)


def test_bases_past_the_memory_budget_unload_the_least_recently_used(tiny_base) -> None:  # noqa: ANN001
    from worker.generation.bases import BasePool

    loads = []
    pool = BasePool(100, make=lambda ref: loads.append(ref.name) or ref.name, size=lambda _: 60)
    other = tiny_base.model_copy(update={"name": "other", "ref": "/nonexistent"})
    assert pool.get(tiny_base) == "tiny" and pool.get(other) == "other"
    assert pool.names() == ("other",)  # tiny (60) + other (60) > 100
    pool.get(other)
    assert loads == ["tiny", "other"]


def test_an_empty_prompt_starts_from_bos(engine, tiny_base) -> None:  # noqa: ANN001
    req = request(tiny_base, prompt="", max_tokens=3)
    replies = run(engine, req)
    assert replies.events[req.id][0].prompt_tokens == 1
    assert replies.last(req.id).completion_tokens == 3
