"""Guards of the sign-in form: failed sign-ins limited per account and per client (counted in Redis with the
`limits` library, so every web process of a studio shares the counts), and a bound on passwords checked at once
(argon2id costs ~64 MiB and a core each), waited for in the event loop so waiting sign-ins hold no worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app.core.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Why a sign-in is refused before its password is checked, and when to try again."""

    message: str
    retry_after_s: int


class LoginLimits:
    """Failed sign-ins per account and per client over a moving window; Redis first, this process's memory if
    Redis is unreachable (the limits then hold per process, which is still a limit)."""

    def __init__(self, settings: Settings) -> None:
        # Keys named after the database: the processes of one studio share counts, two studios on one Redis do not.
        studio = hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:16]
        redis = RedisStorage(settings.redis_url, key_prefix=f"lorastudio-login-{studio}", wrap_exceptions=True,
                             socket_connect_timeout=2, socket_timeout=2)
        self._limiters = (MovingWindowRateLimiter(redis), MovingWindowRateLimiter(MemoryStorage()))
        self.per_account = parse(settings.login_failures_per_account)
        self.per_client = parse(settings.login_failures_per_client)

    def refusal(self, username: str, client: str) -> Refusal | None:
        """A refusal when the account or the client used up its failures, else None."""
        for item, key, whose in ((self.per_account, _account(username), "this account"),
                                 (self.per_client, client, "your address")):
            if not self._call("test", item, key):
                wait = self._retry_after(item, key)
                return Refusal(f"Too many failed sign-ins for {whose}. Try again in {_human(wait)}.", wait)
        return None

    def failed(self, username: str, client: str) -> None:
        """Count a failed sign-in against the account and the client."""
        self._call("hit", self.per_account, _account(username))
        self._call("hit", self.per_client, client)

    def succeeded(self, username: str) -> None:
        """The right password: the account's failures are forgotten (the client's are not)."""
        self._call("clear", self.per_account, _account(username))

    def _retry_after(self, item: RateLimitItem, key: str) -> int:
        stats = self._call("get_window_stats", item, key)
        return max(1, math.ceil(stats.reset_time - time.time())) if stats else item.get_expiry()

    def _call(self, method: str, item: RateLimitItem, key: str):  # noqa: ANN202 - each method's own answer
        redis, memory = self._limiters
        try:
            return getattr(redis, method)(item, "login", key)
        except StorageError as error:
            log.warning("sign-in limits: Redis unreachable (%s); counting in this process", error)
            return getattr(memory, method)(item, "login", key)


def _account(username: str) -> str:
    # Hashed: a key holds no attacker-chosen text, and any length of name makes one short key.
    return hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]


def _human(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"


class HashSlots:
    """At most `slots` passwords checked at once in this process; others wait up to wait_s in the event loop."""

    def __init__(self, slots: int, wait_s: float) -> None:
        self.slots, self.wait_s = slots, wait_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _current(self) -> asyncio.Semaphore:
        # One event loop per server process; a test's clients may each bring a loop of their own.
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.slots)
        return self._semaphore

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        """True while a slot is held, False when none came free in time (the caller answers 503)."""
        semaphore = self._current()
        try:
            async with asyncio.timeout(self.wait_s):  # not wait_for: on 3.11 it can lose a slot it just acquired
                await semaphore.acquire()
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            semaphore.release()


@dataclass
class LoginGuards:
    """The web process's sign-in guards (create_app keeps one on app.state)."""

    limits: LoginLimits
    slots: HashSlots

    @classmethod
    def of(cls, settings: Settings) -> LoginGuards:
        """Guards sized by the settings."""
        return cls(LoginLimits(settings), HashSlots(settings.login_hash_slots, settings.login_wait_s))


def login_guards(request: Request) -> LoginGuards:
    """This app's sign-in guards."""
    return request.app.state.login_guards


async def hash_slot(request: Request) -> AsyncIterator[bool]:
    """A password-checking slot for this request, held until the route returns."""
    async with login_guards(request).slots.hold() as held:
        yield held


LoginGuardsDep = Annotated[LoginGuards, Depends(login_guards)]
HashSlotDep = Annotated[bool, Depends(hash_slot, scope="function")]
