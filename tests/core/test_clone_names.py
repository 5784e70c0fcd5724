"""A clone's name: its source's with the first " (n)" its owner has not used, never the source's own name."""

from __future__ import annotations

from app.core.models import Run, RunStatus, User
from app.core.services import runs as run_service


def _run(session, ids: dict, name: str, owner_id: int | None) -> Run:  # noqa: ANN001
    run = Run(name=name, status=RunStatus.succeeded, method="lora", spec={}, dataset_id=ids["dataset_id"],
              base_model_id=ids["model_id"], owner_id=owner_id)
    session.add(run)
    session.flush()
    return run


def test_the_first_free_number_of_the_same_owner(session, ids, admin) -> None:  # noqa: ANN001
    me = session.get(User, admin.id)
    source = _run(session, ids, "my-run", admin.id)
    assert run_service.clone_name(session, source, user=me) == "my-run (2)"
    copy = _run(session, ids, "my-run (2)", admin.id)
    _run(session, ids, "my-run (3)", None)  # someone else's (here nobody's) name is no obstacle
    _run(session, ids, "my-run (4)", admin.id)
    assert run_service.clone_name(session, source, user=me) == "my-run (3)"
    assert run_service.clone_name(session, copy, user=me) == "my-run (3)"  # counts on, not "my-run (2) (2)"


def test_wildcards_in_names_and_long_names(session, ids, admin) -> None:  # noqa: ANN001
    me = session.get(User, admin.id)
    _run(session, ids, "a_b% (2)", admin.id)
    assert run_service.clone_name(session, _run(session, ids, "a_b%", admin.id), user=me) == "a_b% (3)"
    long = "x" * 200
    name = run_service.clone_name(session, _run(session, ids, long, admin.id), user=me)
    assert len(name) == 200 and name.endswith(" (2)")
