"""Nothing user-supplied is unpickled: a booby-trapped pickle is refused under any name, and no unsafe loader exists."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from tests.support.uploads import stored_counts

ROOT = Path(__file__).resolve().parents[2]
# Loaders that run code from the data (pickle, torch.load, unsafe YAML) and shells that parse user strings.
FORBIDDEN = {
    "torch.load": r"\btorch\.load\(",
    "pickle.load(s)": r"\b(c?pickle|dill|joblib)\.loads?\(",
    "shell=True": r"shell\s*=\s*True",
    "yaml.load": r"\byaml\.(unsafe_)?load\(",
    "numpy allow_pickle": r"allow_pickle\s*=\s*True",
}


class _Booby:
    """Unpickling this calls open(marker, "w"), so the marker file appears if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _payloads(marker: Path) -> list[tuple[str, str, bytes]]:
    body = pickle.dumps(_Booby(marker), protocol=4)
    text = pickle.dumps(_Booby(marker), protocol=0)  # protocol 0 is ASCII: no binary magic to spot
    return [
        ("jsonl", "data.jsonl", body),
        ("json", "data.json", body),
        ("pkl", "data.pkl", body),
        ("parquet-name", "data.parquet", body),
        ("parquet-magic", "data.parquet", b"PAR1" + body + b"PAR1"),
        ("protocol-0-jsonl", "data.jsonl", text),
        ("protocol-0-csv", "data.csv", text),
    ]


CASES = ["jsonl", "json", "pkl", "parquet-name", "parquet-magic", "protocol-0-jsonl", "protocol-0-csv"]


def test_the_booby_trap_works(tmp_path: Path) -> None:
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Booby(marker)))  # noqa: S301 - proves the payload is live
    assert marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_malicious_pickle_is_refused_and_never_unpickled(client, session, tmp_path: Path, case: str) -> None:
    marker = tmp_path / "pwned"
    _, filename, body = next(p for p in _payloads(marker) if p[0] == case)
    before = stored_counts(session)
    response = client.post("/api/datasets", files={"file": (filename, body)})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] and response.json()["error"]["message"]
    assert not marker.exists()
    assert stored_counts(session) == before


def _sources() -> list[Path]:
    return sorted(p for folder in ("app", "worker") for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("what", list(FORBIDDEN))
def test_no_unsafe_loader_in_the_source(what: str) -> None:
    pattern = re.compile(FORBIDDEN[what])
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in _sources()
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    advice = "load with safetensors / json / yaml.safe_load and pass argv lists"
    assert not hits, f"{what} found; {advice}:\n" + "\n".join(hits)


def test_adapters_are_saved_as_safetensors() -> None:
    saves = [line for path in _sources() for line in path.read_text(encoding="utf-8").splitlines()
             if "model.save_pretrained(" in line]
    assert saves and all("safe_serialization=True" in line or "safetensors" in line for line in saves), saves


def _pickle_weights_model(tiny_model_dir: Path, folder: Path, marker: Path) -> Path:
    """The tiny model's config and tokenizer, with its weights replaced by a booby-trapped pytorch_model.bin."""
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.is_file() and item.suffix != ".safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Booby(marker), protocol=4))
    return folder


def test_model_with_pickle_weights_is_refused_at_registration(client, tiny_model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _pickle_weights_model(tiny_model_dir, tmp_path / "model", marker)
    response = client.post("/api/models", json={"name": "pickled", "ref": str(folder)})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "unsafe_weights" and error["field"] == "ref" and "safetensors" in error["message"]
    assert not marker.exists()


def test_trainer_never_unpickles_base_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    import worker.trainer.loop as loop
    from tests.support.tiny_model import tiny_chat_dataset
    from worker.planning.spec import RunSpec
    from worker.trainer.errors import TrainerError
    from worker.trainer.sinks import ListSink

    marker = tmp_path / "pwned"
    folder = _pickle_weights_model(tiny_model_dir, tmp_path / "model", marker)
    data = tiny_chat_dataset(tmp_path / "chat.jsonl", 8)
    spec = RunSpec.model_validate({"model": {"base_model": str(folder)},
                                   "data": {"path": str(data)}, "training": {"max_steps": 1}})
    with pytest.raises(TrainerError) as failure:
        loop.train(spec, tmp_path / "out", ListSink())
    assert failure.value.code == "unsafe_weights"
    assert not marker.exists()
    # Even past our own check, transformers is told to load safetensors only and refuses the pickle.
    from transformers import AutoModelForCausalLM

    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    assert not marker.exists()
