"""Deleting runs, evaluations, datasets, base models and users: refused while something still needs the object,
immediate otherwise, and the blobs nothing uses any more collected in the same unit of work. Every delete is audited in
that unit of work too, so the entry and the deletion commit (or roll back) together.

Deletion is immediate (no retention window): a deleted object is gone at commit, with everything that hangs
from it (a run's metrics, timeline, checkpoints and adapter files; a dataset's analyses). Shared blobs are
content-addressed, so a blob goes only when no dataset or artifact points to it any more (blobs.collect_garbage).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.core import blobs
from app.core.access import sees_everything
from app.core.errors import StudioError, not_found
from app.core.models import BaseModelEntry, Dataset, DatasetAnalysis, Evaluation, Run, User
from app.core.repositories import usage
from app.core.repositories.usage import FINISHED_RUNS
from app.core.services import audit

FINISHED_EVALUATIONS = ("succeeded", "failed", "cancelled")


def delete_run(session: Session, run: Run) -> int:
    """Delete a finished run with its metrics, timeline, checkpoints and adapter; returns the blobs collected.

    A queued or running run is refused (409): cancel it first, so no worker writes to a run that is gone.
    """
    # A registered version of its adapter is not in the way: it holds references of its own to the files' blobs.
    blob_ids = usage.run_blob_ids(session, run.id)
    target, owner = _named("run", run.id, run.name), run.owner_id  # read while the row is there to load them from
    gone = session.execute(delete(Run).where(Run.id == run.id, Run.status.in_(FINISHED_RUNS))
                           .execution_options(synchronize_session=False)).rowcount
    if not gone:  # the conditional delete decides, so a run that a worker claims meanwhile is never deleted
        status = usage.run_status(session, run.id)
        if status is None:  # deleted by a concurrent request (a double click)
            raise not_found("run", run.id)
        raise StudioError("conflict", "run_active", f"Run {run.id} is {status}; cancel it first (POST "
                          f"/api/runs/{run.id}/cancel, or Cancel on its page), then delete it once it has stopped.")
    session.expunge(run)
    audit.record(session, "run.delete", target, owner_id=owner)
    return blobs.collect_garbage(session, blob_ids)


def delete_evaluation(session: Session, evaluation: Evaluation) -> None:
    """Delete a finished evaluation with its examples; a queued or running one is refused (409): cancel it first."""
    target = _named("evaluation", evaluation.id, evaluation.model)
    gone = session.execute(delete(Evaluation).where(Evaluation.id == evaluation.id,
                                                    Evaluation.status.in_(FINISHED_EVALUATIONS))
                           .execution_options(synchronize_session=False)).rowcount
    if not gone:  # conditional, as a run's: one a worker claims meanwhile is never deleted under it
        session.expire(evaluation)
        status = session.scalar(select(Evaluation.status).where(Evaluation.id == evaluation.id))
        if status is None:
            raise not_found("evaluation", evaluation.id)
        raise StudioError("conflict", "evaluation_active", f"Evaluation {evaluation.id} is {status}; cancel it "
                          f"first (POST /api/evaluations/{evaluation.id}/cancel, or Cancel on its page), then delete "
                          "it once it has stopped.")
    session.expunge(evaluation)  # its examples went with it (ON DELETE CASCADE)
    audit.record(session, "evaluation.delete", target, owner_id=evaluation.owner_id)


def delete_dataset(session: Session, dataset: Dataset) -> int:
    """Delete a dataset no run uses (any run: a finished run's page and clone name it), with its analyses."""
    _refuse_if_used(session, "dataset", dataset.name, Run.dataset_id, DatasetAnalysis.dataset_id, dataset.id)
    blob_ids = usage.dataset_blob_ids(dataset)
    _delete_row(session, dataset, "dataset", dataset.name)  # its analyses go with it (ON DELETE CASCADE)
    audit.record(session, "dataset.delete", _named("dataset", dataset.id, dataset.name), owner_id=dataset.owner_id)
    return blobs.collect_garbage(session, blob_ids)


def delete_model(session: Session, model_id: int, *, user: User | None) -> None:
    """Unregister a base model no run uses (admins only: the catalog is shared), with its analyses."""
    model = session.get(BaseModelEntry, model_id)
    if model is None or not sees_everything(user):
        # As with another user's objects, a model one may not delete is not found (only admins manage the catalog).
        raise StudioError("not_found", "model_not_found", f"There is no model {model_id} you may delete; only "
                          "admins delete registered models.")
    _refuse_if_used(session, "model", model.name, Run.base_model_id, DatasetAnalysis.base_model_id, model.id)
    _delete_row(session, model, "model", model.name)
    audit.record(session, "model.delete", _named("model", model.id, model.name), ref=model.ref)


def delete_user(session: Session, user_id: int, *, actor: User | None) -> User:
    """Delete an account (admins only; not oneself; never the last admin). Their tokens and browser sessions go
    with it; their datasets and runs stay, owned by nobody, so admins only (who may delete them): a run they
    started is not lost to the others who compared against it, and nothing running is cut off.

    actor None is the host's management CLI (`lorastudio users delete`): it acts as an admin who is nobody's
    account, so only the last-admin rule applies to it (a studio left without an admin could not be run)."""
    target = session.get(User, user_id)
    if target is None or not sees_everything(actor):
        # As for the model catalog, what one may not delete is not found: a plain user learns no account ids.
        raise StudioError("not_found", "user_not_found", f"There is no user {user_id} you may delete; only admins "
                          "delete accounts (`lorastudio users list` names them).")
    if actor is not None and target.id == actor.id:
        raise StudioError("conflict", "cannot_delete_self", "You cannot delete your own account; ask another "
                          "admin.")
    if target.is_admin and usage.admin_count(session) <= 1:
        raise StudioError("conflict", "last_admin", "This is the last admin; make another admin first.")
    session.delete(target)
    session.flush()
    audit.record(session, "user.delete", _named("user", target.id, target.username), was_admin=target.is_admin)
    return target


def _refuse_if_used(session: Session, what: str, name: str, run_column: InstrumentedAttribute[int],
                    analysis_column: InstrumentedAttribute[int], object_id: int) -> None:
    active = usage.runs_using(session, run_column, object_id, active=True)
    if active:
        raise StudioError("conflict", f"{what}_in_use", f"The {what} '{name}' is used by queued or running "
                          f"{_runs(active)}; cancel them (or wait for them to end), then delete the runs first.")
    finished = usage.runs_using(session, run_column, object_id, active=False)
    if finished:
        raise StudioError("conflict", f"{what}_has_runs", f"The {what} '{name}' is what {_runs(finished)} "
                          f"trained on; delete {'that run' if len(finished) == 1 else 'those runs'} first.")
    analyses = usage.active_analyses(session, analysis_column, object_id)
    if analyses:
        raise StudioError("conflict", f"{what}_in_use", f"The {what} '{name}' is being analysed (analysis "
                          f"{', '.join(map(str, analyses))}); try again once it has finished.")


def _delete_row(session: Session, row: Dataset | BaseModelEntry, what: str, name: str) -> None:
    """Delete row; a run that a concurrent request has just queued on it holds it (the foreign key), so that race
    ends in a 409 rather than a 500 or a run without its dataset."""
    try:
        with session.begin_nested():
            session.delete(row)
            session.flush()
    except IntegrityError:
        raise StudioError("conflict", f"{what}_in_use", f"The {what} '{name}' was just given a run; delete that "
                          "run first.") from None


def _named(what: str, object_id: int, name: str) -> str:
    """An audit target naming the object both ways: the id to find its traces, the name a person knew it by."""
    return f"{what} {object_id} '{name}'"


def _runs(run_ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in run_ids[:20])
    more = f" and {len(run_ids) - 20} more" if len(run_ids) > 20 else ""
    return f"run{'s' if len(run_ids) > 1 else ''} {shown}{more}"
