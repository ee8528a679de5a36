"""Retries for cloud calls: exponential backoff with full jitter (tenacity), only for what is worth retrying."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from app.domain.errors import BackendUnavailable

T = TypeVar("T")


class Retryable(Exception):
    """A throttled, failed or dropped call (429, 5xx, a timeout, a lost connection): worth another try."""


async def with_retries(
    call: Callable[[], Awaitable[T]], *, service: str, attempts: int, first_wait_s: float, max_wait_s: float
) -> T:
    """Run `call` until it stops raising Retryable; after `attempts` it is a technical failure (503 / recalc)."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Retryable),
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=first_wait_s, max=max_wait_s),
            reraise=True,
        ):
            with attempt:
                return await call()
    except Retryable as exc:
        raise BackendUnavailable(f"{service} failed {attempts} times; last: {exc}") from exc
    raise AssertionError("unreachable")
