"""The checks in flight: a bounded number per process, the rest refused at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from app.domain.errors import TooBusy


class InFlightLimit:
    """At most `limit` checks at once in this process; one more is refused at once (429, Retry-After) before
    its body is read, instead of queueing uploads in memory."""

    def __init__(self, limit: int, retry_after_s: int = 1) -> None:
        self._limit = limit
        self._retry_after = str(retry_after_s)
        self._busy = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self._busy >= self._limit:
            raise TooBusy(
                f"{self._limit} checks are in flight, the most this process takes on; try again shortly",
                headers={"Retry-After": self._retry_after},
            )
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
