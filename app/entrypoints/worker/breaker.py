"""The circuit breaker of the scheduler: while a backend the whole batch needs (the database, the index, the
embedder) is down, rows wait instead of spending their attempts.

A batch whose every row failed with a backend fault opens it: those rows go back to `recalc` with their attempt
count unchanged, due when the breaker lets the next claim through (5 s, doubling to 5 min while it stays down),
and no new batch is claimed before that. The first batch that gets anything else through closes it, and
attempts count again. `/stats` and `/metrics` show its state and reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from app.check.metrics import Metrics
from app.check.service import CheckOutcome
from app.domain.errors import AppError, BackendUnavailable, CheckRaced

log = logging.getLogger(__name__)


def backend_fault(error: AppError | None) -> bool:
    """A fault of a backend every image needs, not of this one image (its host, its bytes, its race)."""
    return isinstance(error, BackendUnavailable) and not isinstance(error, CheckRaced)


class BackendBreaker:
    def __init__(self, metrics: Metrics, base_s: float = 5.0, max_s: float = 300.0) -> None:
        self._metrics = metrics
        self._base_s = base_s
        self._max_s = max_s
        self._trips = 0
        self._until: float | None = None

    @property
    def open(self) -> bool:
        return self._until is not None

    def wait_s(self) -> float:
        """How long until the next claim may go through (0 when closed)."""
        return max(0.0, self._until - time.monotonic()) if self._until is not None else 0.0

    def blocks(self) -> bool:
        return self.wait_s() > 0

    def judge(self, outcomes: Sequence[CheckOutcome]) -> bool:
        """After a batch: trip on a batch that failed whole on a backend, close on anything else. True when the
        batch's rows must not spend an attempt."""
        if outcomes and all(backend_fault(o.error) for o in outcomes):
            error = outcomes[0].error
            self._trip(f"{error.code}: {error.message}" if error else "backend down")
            return True
        if self._until is not None:
            log.info("backends answer again: the circuit closes, attempts count again")
            self._metrics.observe_circuit(None, 0.0)
        self._trips, self._until = 0, None
        return False

    def _trip(self, reason: str) -> None:
        self._trips += 1
        wait = min(self._base_s * 2 ** (self._trips - 1), self._max_s)
        self._until = time.monotonic() + wait
        self._metrics.observe_circuit(reason, wait)
        log.warning("a whole batch failed on a backend (%s): rows wait %.0f s without spending attempts", reason, wait)
