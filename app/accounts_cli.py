"""`lorastudio users …` and `lorastudio tokens …`: accounts and API tokens, straight on the studio's database
(run them where LORASTUDIO_DATA_DIR or DATABASE_URL names it: they say which one they use and refuse to create
one), and the first admin that `lorastudio up` makes on a fresh studio."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from sqlalchemy.orm import Session

from app.cli_database import require_studio_database
from app.core import schema
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.errors import StudioError
from app.core.models import User
from app.core.repositories import users as users_repo
from app.core.resources import Resources
from app.core.services import accounts, api_tokens, audit, deletion, quotas

users_app = typer.Typer(help="Accounts on this studio's database.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for the REST API and the CLI.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: sign-ins, tokens, account changes, local model folders.",
                        no_args_is_help=True)
PASSWORD_STDIN = typer.Option(False, "--password-stdin", help="Read the password from standard input (scripts).")
CONFIRM_DELETE = typer.Option(False, "--yes", help="Confirm the delete: it cannot be undone.")


@contextmanager
def _session(settings: Settings | None = None, check: bool = True) -> Iterator[Session]:
    """One unit of work on the studio's database; a refused request prints its message and exits 1.

    With `check`, the database is named and must exist already (a new one is made by `lorastudio migrate` or
    `up`, never by a mistyped data folder), then it is brought to the newest schema."""
    res = Resources(settings or get_settings())
    if check:
        schema.upgrade(require_studio_database(res.settings))
    try:
        with session_scope(res.session_factory) as session:
            audit.set_origin(session, audit.Origin.cli())  # what this command changes is audited as the host's
            yield session
    except StudioError as error:
        typer.echo(f"error {error.code}: {error.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        res.engine.dispose()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _user(session: Session, username: str) -> User:
    user = users_repo.by_name(session, accounts.normalise_username(username))
    if user is None:
        raise StudioError("not_found", "user_not_found", f"There is no user '{username}'; see `lorastudio users list`.")
    return user


@users_app.command("create")
def create_user(
    username: str = typer.Argument(..., help="Letters, digits, dots, dashes, underscores."),
    admin: bool = typer.Option(False, "--admin", help="An admin sees and manages everyone's datasets and runs."),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Make an account (the password is asked twice, or read from standard input)."""
    password = _password(password_stdin)
    with _session() as session:
        user = accounts.create_user(session, username, password, is_admin=admin)
        name = user.username
    typer.echo(f"user '{name}' created{' (admin)' if admin else ''}: log in at /login; an API token for the CLI: "
               f"lorastudio tokens create {name}")


@users_app.command("set-password")
def set_password(username: str, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Give an account a new password (it is signed out of every browser)."""
    password = _password(password_stdin)
    with _session() as session:
        accounts.set_password(session, _user(session, username), password)
    typer.echo(f"password of '{accounts.normalise_username(username)}' changed")


@users_app.command("set-admin")
def set_admin(username: str, admin: bool = typer.Option(True, "--admin/--no-admin",
                                                         help="Make the account an admin, or take it away.")) -> None:
    """Make an account an admin (it sees and manages everyone's datasets and runs), or a plain user again."""
    with _session() as session:
        accounts.set_admin(session, _user(session, username), admin)
    typer.echo(f"'{accounts.normalise_username(username)}' is {'an admin' if admin else 'a plain user'} now")


@users_app.command("list")
def list_users() -> None:
    """Every account: name, role, since when, id."""
    with _session() as session:
        users = users_repo.list_all(session)
        for user in users:
            typer.echo(f"{user.username}\t{'admin' if user.is_admin else 'user'}\tsince {user.created_at:%Y-%m-%d}"
                       f"\tid {user.id}")  # the id DELETE /api/users/{id} takes
    if not users:
        typer.echo("no accounts yet (`lorastudio up` makes the first admin): lorastudio users create NAME --admin",
                   err=True)


@users_app.command("delete")
def delete_user(username: str, yes: bool = CONFIRM_DELETE) -> None:
    """Delete an account with its API tokens and browser sessions; its datasets and runs stay, for admins to keep
    or delete. Refused for the last admin."""
    if not yes:  # no prompt: a script that forgot the flag must fail, not hang or delete
        typer.echo(f"error confirm_delete: deleting '{username}' cannot be undone (its tokens and sessions go with "
                   f"it); run again with --yes: lorastudio users delete {username} --yes", err=True)
        raise typer.Exit(1)
    with _session() as session:
        deletion.delete_user(session, _user(session, username).id, actor=None)  # the host's CLI acts as an admin
    typer.echo(f"user '{accounts.normalise_username(username)}' deleted; their datasets and runs stay, for admins")


QUOTA_HELP = " A number; 0: no limit; 'default': the studio default (LORASTUDIO_QUOTA_*)."


@users_app.command("set-quota")
def set_quota(
    username: str,
    queued: str = typer.Option(None, "--queued", help="Most runs queued at once." + QUOTA_HELP),
    running: str = typer.Option(None, "--running", help="Most runs training at once (the rest wait)." + QUOTA_HELP),
    storage: str = typer.Option(None, "--storage", help="Most bytes stored, e.g. 10GB, 500MB, 2GiB." + QUOTA_HELP),
) -> None:
    """Set a user's quotas (only those given change); prints the quotas that apply and what is used of them."""
    with _session() as session:
        user = _user(session, username)
        for column, value, parse in (("max_queued_runs", queued, _count), ("max_running_runs", running, _count),
                                     ("max_storage_bytes", storage, _size)):
            if value is not None:
                setattr(user, column, None if value.strip().lower() == "default" else parse(value, column))
        session.flush()
        limits, usage = quotas.limits_of(user), quotas.usage_of(session, user)
        name = user.username
    typer.echo(f"{name}: queued runs {usage.queued_runs}/{_limit(limits.queued_runs)}, running runs "
               f"{usage.running_runs}/{_limit(limits.running_runs)}, storage {quotas.format_bytes(usage.storage_bytes)}"
               f"/{_limit(limits.storage_bytes, quotas.format_bytes)}")


def _count(value: str, column: str) -> int:
    if not value.strip().isdigit():
        raise StudioError("invalid", "invalid_quota", f"{column}: '{value}' is not a whole number of runs (0: no "
                          "limit, 'default': the studio default).", field=column)
    return int(value)


def _size(value: str, column: str) -> int:
    try:
        return quotas.parse_bytes(value)
    except ValueError as error:
        raise StudioError("invalid", "invalid_quota", f"{column}: {error} (0: no limit, 'default': the studio "
                          "default).", field=column) from None


def _limit(value: int | None, show: Callable[[int], str] = str) -> str:
    return "no limit" if value is None else show(value)


@tokens_app.command("create")
def create_token(username: str, name: str = typer.Option("cli", help="Where the token will be used.")) -> None:
    """Make an API token; only the token goes to standard output, so `export LORASTUDIO_TOKEN=$(…)` works."""
    with _session() as session:
        token, plaintext = api_tokens.create_token(session, _user(session, username), name)
        token_id = token.id
    typer.echo(f"token {token_id} for '{username}' (shown once; revoke: lorastudio tokens revoke {token_id}):",
               err=True)
    typer.echo(plaintext)


@tokens_app.command("list")
def list_tokens(username: str = typer.Argument(None, help="Only this user's tokens.")) -> None:
    """API tokens: id, owner, name, first characters, state."""
    with _session() as session:
        owner = _user(session, username) if username else None
        names = {u.id: u.username for u in users_repo.list_all(session)}
        for t in api_tokens.list_tokens(session, owner):
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            typer.echo(f"{t.id}\t{names.get(t.user_id)}\t{t.name}\t{t.prefix}…\t{state}")


@tokens_app.command("revoke")
def revoke_token(token_id: int) -> None:
    """Revoke a token; requests with it are refused from now on."""
    with _session() as session:
        api_tokens.revoke_token(session, token_id)
    typer.echo(f"token {token_id} revoked")


@tokens_app.command("delete")
def delete_token(token_id: int) -> None:
    """Delete a token (revoked or not) so it no longer lists; requests with it are refused from now on."""
    with _session() as session:
        api_tokens.delete_token(session, token_id)
    typer.echo(f"token {token_id} deleted")


@audit_app.command("list")
def list_audit(limit: int = typer.Option(50, min=1, max=audit.MAX_LIST, help="How many, newest first."),
               action: str = typer.Option(None, help="Only this action, e.g. login.failure.")) -> None:
    """The newest audit entries: when, action, who, from where, on what, details."""
    with _session() as session:
        for entry in audit.list_entries(session, None, limit=limit, action=action):
            typer.echo(f"{entry.at:%Y-%m-%d %H:%M:%S}\t{entry.action}\t{entry.actor or '-'}\t{entry.client or '-'}\t"
                       f"{entry.target}\t{json.dumps(entry.details, sort_keys=True)}")


def first_admin(settings: Settings) -> tuple[str, str | None] | None:
    """Make the admin of a fresh studio: (username, password to print, or None when it came from the
    environment); None when accounts exist already, so the password is printed on the first start only."""
    with _session(settings, check=False) as session:  # `up` made or migrated it a moment ago
        made = accounts.ensure_first_admin(session, settings.admin_password)
        if made is None:
            return None
        return made[0].username, (None if settings.admin_password else made[1])
