"""Checkpoints: plain data written whole, and a run resumed from one ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import worker.trainer.loop as loop
from worker.trainer import checkpoint, state_codec
from worker.trainer.errors import TrainerError
from worker.trainer.sinks import ListSink

# Two epochs of 5 steps (36 training examples, 4 per batch, 2 batches per step: the 5th step has one batch),
# dropout on, a warm-up then cosine schedule and evaluations: everything a resume has to restore.
TRAINING = {"max_steps": 12, "save_steps": 4, "gradient_accumulation_steps": 2, "eval_steps": 5,
            "lr_scheduler": "cosine", "warmup_ratio": 0.1}


@pytest.fixture(autouse=True)
def _one_math_thread():
    """The tiny model gains nothing from threads, and threads spinning against other work on a shared machine
    made these trainings several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spec(make_spec, method: str = "lora"):
    return make_spec(method=method, data={"eval_fraction": 0.1}, lora={"dropout": 0.1}, training=TRAINING)


def _losses(sink: ListSink, after: int) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in sink.metrics() if "loss" in m and m["step"] > after}


def _max_diff(a: Path, b: Path) -> float:
    left, right = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert left.keys() == right.keys()
    return max((left[k] - right[k]).abs().max().item() for k in left)


def _no_unpickling(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("resuming must not unpickle anything")

    for owner, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(owner, name, refuse)


def _interrupted(spec, out: Path, stop_after: int) -> ListSink:
    """Train until the step `stop_after` ends (a cancel there), leaving its checkpoints in out/checkpoints."""
    polls: list[int] = []
    sink = ListSink()
    loop.train(spec, out, sink, should_stop=lambda: polls.append(1) or len(polls) >= stop_after)
    return sink


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_resumed_run_ends_where_an_uninterrupted_one_does(method, make_spec, tmp_path, monkeypatch) -> None:
    spec = _spec(make_spec, method)
    whole_sink = ListSink()
    whole = loop.train(spec, tmp_path / "whole", whole_sink)
    sink = _interrupted(spec, tmp_path / "first", stop_after=10)
    events = [e for e in sink.events if e["type"] == "checkpoint"]
    assert [e["step"] for e in events] == [4, 8]
    folders = sorted((tmp_path / "first" / "checkpoints").iterdir())
    assert [f.name for f in folders] == ["step-000004", "step-000008"]  # whole folders only, no leftovers
    starts = [4, 8] if method == "lora" else [8]  # mid first epoch, and mid second epoch
    for start in starts:
        folder = tmp_path / "first" / "checkpoints" / checkpoint.folder_name(start)
        assert {p.suffix for p in folder.iterdir()} == {".safetensors", ".json"}
        with monkeypatch.context() as patched:
            _no_unpickling(patched)
            resumed_sink = ListSink()
            resumed = loop.train(spec, tmp_path / f"from-{start}", resumed_sink, resume_from=folder)
        assert resumed.status == "succeeded" and resumed.steps == whole.steps == 12
        diff = _max_diff(whole.adapter_dir, resumed.adapter_dir)
        print(f"{method}: resumed from step {start}: adapter max |diff| {diff:.2e}")
        assert diff < 1e-4
        assert sorted(_losses(resumed_sink, start)) == list(range(start + 1, 13))
        for step, loss in _losses(resumed_sink, start).items():
            assert loss == pytest.approx(_losses(whole_sink, start)[step], abs=1e-4), step
        assert resumed.eval_loss == pytest.approx(whole.eval_loss, abs=1e-4)


def test_checkpoint_with_a_changed_file_is_refused(make_spec, tmp_path) -> None:
    spec = _spec(make_spec)
    _interrupted(spec, tmp_path / "first", stop_after=5)
    folder = tmp_path / "first" / "checkpoints" / "step-000004"
    manifest = checkpoint.verify(folder)
    assert manifest["step"] == 4 and manifest["position"]["train_examples"] == 36
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # as if cut short
    with pytest.raises(TrainerError) as caught:
        loop.train(spec, tmp_path / "again", ListSink(), resume_from=folder)
    assert caught.value.code == "checkpoint_invalid" and "sha256" in caught.value.message
    (folder / "optimizer.pt").write_bytes(b"not data")
    with pytest.raises(TrainerError, match="differ"):
        checkpoint.verify(folder)


def test_checkpoint_of_other_settings_is_refused(make_spec, tmp_path) -> None:
    _interrupted(_spec(make_spec), tmp_path / "first", stop_after=5)
    other = make_spec(data={"eval_fraction": 0.1}, training={**TRAINING, "per_device_batch_size": 2})
    with pytest.raises(TrainerError) as caught:
        loop.train(other, tmp_path / "again", ListSink(), resume_from=tmp_path / "first/checkpoints/step-000004")
    assert caught.value.code == "checkpoint_mismatch" and "batch_size 4 → 2" in caught.value.message


def test_state_codec_round_trips_optimizer_and_rng_state(tmp_path) -> None:
    param = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.AdamW([param], lr=1e-2, betas=(0.8, 0.9))
    param.grad = torch.ones_like(param)
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": checkpoint.rng_state(), "odd": [float("inf"), None]}
    files = state_codec.save(state, tmp_path, "state")
    assert {p.name for p in files} == {"state.json", "state.safetensors"}
    json.loads(files[0].read_text())  # plain JSON
    back = state_codec.load(tmp_path, "state")
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert back["odd"] == [float("inf"), None]
    checkpoint.restore_rng(back["rng"])
    expected = torch.rand(4)
    checkpoint.restore_rng(back["rng"])
    assert torch.equal(torch.rand(4), expected)
    with pytest.raises(TypeError, match="cannot hold"):
        state_codec.save({"fn": print}, tmp_path, "bad")


def test_8bit_optimizer_state_round_trips(tmp_path) -> None:
    """QLoRA's default optimizer on CUDA keeps quantised state in nested dictionaries; it must survive too."""
    import bitsandbytes as bnb

    params = [torch.nn.Parameter(torch.randn(4096)) for _ in range(2)]
    optimizers = [bnb.optim.AdamW8bit([p], lr=1e-2) for p in params]
    params[1].data.copy_(params[0].data)
    for _ in range(2):
        params[0].grad = torch.randn(4096)
        optimizers[0].step()
    state_codec.save(optimizers[0].state_dict(), tmp_path, "optimizer")
    params[1].data.copy_(params[0].data)
    optimizers[1].load_state_dict(state_codec.load(tmp_path, "optimizer"))
    grad = torch.randn(4096)
    for param, optimizer in zip(params, optimizers, strict=True):
        param.grad = grad.clone()
        optimizer.step()
    assert torch.equal(params[0], params[1])
