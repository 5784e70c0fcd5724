"""Minimal database rows for service-level tests: a run with just enough around it to satisfy its foreign keys."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.core.models import BaseModelEntry, Blob, Dataset, Run, RunStatus


def insert_run(session: Session, **fields: Any) -> int:
    """Flush a run (a placeholder blob, hub model and dataset under it) with `fields` over the defaults; its id."""
    tag = uuid.uuid4().hex
    blob = Blob(sha256=tag, size=0, media_type="x")
    model = BaseModelEntry(name=f"m-{tag}", source="hub", ref="org/m")
    session.add_all([blob, model])
    session.flush()
    dataset = Dataset(name="d", filename="d.jsonl", file_type="jsonl", format="text", row_count=1, size_bytes=1,
                      sha256="0" * 64, blob_id=blob.id)
    session.add(dataset)
    session.flush()
    run = Run(**{"name": "r", "status": RunStatus.running, "method": "lora", "spec": {}, "dataset_id": dataset.id,
                 "base_model_id": model.id, **fields})
    session.add(run)
    session.flush()
    return run.id
