"""`lorastudio users …` and `lorastudio tokens …`: accounts and API tokens, straight on the studio's database
(run them where DATABASE_URL reaches it), and the first admin that `lorastudio up` makes on a fresh studio."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy.orm import Session

from app.core import schema
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.errors import StudioError
from app.core.models import User
from app.core.repositories import users as users_repo
from app.core.resources import Resources
from app.core.services import accounts, api_tokens

users_app = typer.Typer(help="Accounts on this studio's database.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for the REST API and the CLI.", no_args_is_help=True)
PASSWORD_STDIN = typer.Option(False, "--password-stdin", help="Read the password from standard input (scripts).")


@contextmanager
def _session(settings: Settings | None = None, migrate: bool = True) -> Iterator[Session]:
    """One unit of work on the migrated database; a refused request prints its message and exits 1."""
    res = Resources(settings or get_settings())
    if migrate:  # a fresh SQLite studio may get its first account before its first `up`
        schema.upgrade(res.settings.resolved_database_url)
    try:
        with session_scope(res.session_factory) as session:
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


@users_app.command("list")
def list_users() -> None:
    """Every account."""
    with _session() as session:
        for user in users_repo.list_all(session):
            typer.echo(f"{user.username}\t{'admin' if user.is_admin else 'user'}\tsince {user.created_at:%Y-%m-%d}")


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


def first_admin(settings: Settings) -> tuple[str, str | None] | None:
    """Make the admin of a fresh studio: (username, password to print, or None when it came from the
    environment); None when accounts exist already, so the password is printed on the first start only."""
    with _session(settings, migrate=False) as session:  # `up` migrated it a moment ago
        made = accounts.ensure_first_admin(session, settings.admin_password)
        if made is None:
            return None
        return made[0].username, (None if settings.admin_password else made[1])
