"""`with_backoff`: retry an async operation with capped exponential backoff and jitter.

Sleeps with `trio.sleep`, so `trio.testing.MockClock` drives it in tests. Used by the
block-builder to keep retrying a block write while the object store is down.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from tempo_lite.errors import StorageError

T = TypeVar("T")


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | random.SystemRandom) -> float:
    """Delay after failed attempt number `attempt` (1-based): "equal jitter" in
    [d/2, d] with d = min(cap, base * 2**(attempt-1)), so retries never bunch at zero."""
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return ceiling / 2 + rng.random() * ceiling / 2


async def with_backoff(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int | None = None,
    base: float = 0.5,
    cap: float = 30.0,
    on_error: Callable[[str, BaseException, int, float], None] | None = None,
    retry_on: tuple[type[BaseException], ...] = (StorageError,),
    rng: random.Random | None = None,
) -> T:
    """`await fn()` until it succeeds; on an exception in `retry_on`, sleep and try again.

    `attempts=None` retries forever (until cancelled); otherwise the last error is raised after
    `attempts` tries. `on_error(what, error, attempt, delay)` is called before each sleep (for
    logs and metrics) and not after the final failure. Other exceptions propagate at once.
    """
    if attempts is not None and attempts < 1:
        raise ValueError(f"{what}: attempts must be >= 1 or None, got {attempts}")
    if base <= 0 or cap < base:
        raise ValueError(f"{what}: need 0 < base <= cap, got base={base} cap={cap}")
    rand = rng or random.Random()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except retry_on as exc:
            if attempts is not None and attempt >= attempts:
                raise
            delay = backoff_delay(attempt, base=base, cap=cap, rng=rand)
            if on_error is not None:
                on_error(what, exc, attempt, delay)
        await trio.sleep(delay)
