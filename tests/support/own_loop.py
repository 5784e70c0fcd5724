"""Run a coroutine to completion on an event loop of its own thread.

The browser tests' session-wide Playwright (sync API) keeps an event loop running in the main thread, and
asyncio.run refuses to start inside a running loop; a load test that runs after them gets a thread of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_on_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(coroutine) in a fresh thread; its result or exception comes back here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="own-loop") as pool:
        return pool.submit(asyncio.run, coroutine).result()
