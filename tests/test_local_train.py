"""`lorastudio train` refuses bad input before it spawns a trainer, naming the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from app.local_train import train_from_yaml


def _spec(tmp_path: Path, data: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"model": {"base_model": str(tmp_path / "model")}, "data": {"path": data}}))
    return spec


def test_a_missing_data_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"data.path .*nowhere.jsonl is not a file"):
        train_from_yaml(_spec(tmp_path, "nowhere.jsonl"), tmp_path / "out")


def test_a_bad_row_is_named_by_line_and_field(tmp_path: Path) -> None:
    rows = [{"text": "fine"}, {"text": ""}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit, match=r"data.jsonl: empty_field: .*, line 2, field text"):
        train_from_yaml(_spec(tmp_path, "data.jsonl"), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing was trained or written
