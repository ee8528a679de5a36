"""Many jobs of one kind gathered at once (one per image or per pair), where one job's failure stays its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def each_result(jobs: Sequence[Awaitable[T]], what: str) -> list[T | BaseException]:
    """Every job's result, or its error: one image's failure (a corrupt thumbnail, an OpenCV error) stays its own,
    logged as `what` failed. Cancellation and the like are not one image's fault: they are raised."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("%s failed: %s: %s", what, type(result).__name__, result)
        elif isinstance(result, BaseException):
            raise result
    return results
