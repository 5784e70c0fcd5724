"""How credentials are made and kept: argon2id password hashes, and random tokens stored as their sha256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# argon2id with the library's recommended cost (OWASP's minimum or above); the hash string records its
# parameters, so raising them later still verifies old hashes.
_hasher = PasswordHash((Argon2Hasher(),))
TOKEN_BYTES = 32  # 256 random bits: guessing is hopeless, so a fast hash is enough to keep them at rest


def hash_password(password: str) -> str:
    """An argon2id hash string of the password."""
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when password matches; with no hash it still spends the time of one check, then says no."""
    if password_hash is None:
        _hasher.verify(password, _dummy_hash())
        return False
    return _hasher.verify(password, password_hash)


@cache
def _dummy_hash() -> str:
    """Checked against when a username is unknown, so a wrong name takes as long as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


def new_secret(prefix: str = "") -> str:
    """A URL-safe random secret (API token, session id, CSRF token) with an optional recognisable prefix."""
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def digest(secret: str) -> str:
    """The sha256 hex of a secret: what the database keeps and looks up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of two secrets; missing ones never match."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
