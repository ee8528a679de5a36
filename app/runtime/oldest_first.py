"""A thread pool that runs the waiting task of the oldest check first.

With several checks in flight on few cores, a first-come pool interleaves their tasks, so every check shares the
cores with every other until it ends: a check with much to do (a framed image, looked at part by part) is
stretched by all the cheap ones that arrive meanwhile, and sets the latency's tail. Ordering the waiting tasks by
when their check began lets the oldest one through first; the work done is the same, only its order changes.

The order is the moment `checking()` was entered in the submitting task's context (asyncio copies the context into
the tasks a check gathers); a task submitted outside any check queues by its own submission time.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

# When the check that submits a task began (time.monotonic); None outside a check.
_CHECK_BEGAN: ContextVar[float | None] = ContextVar("check_began", default=None)


@contextlib.contextmanager
def checking() -> Iterator[None]:
    """Mark the tasks this context submits from now on as one check's, begun now (an enclosing check's moment
    stands: a check inside another is part of it)."""
    if _CHECK_BEGAN.get() is not None:
        yield
        return
    token = _CHECK_BEGAN.set(time.monotonic())
    try:
        yield
    finally:
        _CHECK_BEGAN.reset(token)


_Pending = tuple[float, int, Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class OldestFirstPool(Executor):
    def __init__(self, threads: int, name: str, initializer: Callable[[], object] | None = None) -> None:
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self._pending: list[_Pending] = []
        self._order = itertools.count()  # ties (same check) run in submission order
        self._changed = threading.Condition()
        self._closed = False
        self._initializer = initializer
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        began = _CHECK_BEGAN.get()
        future: Future[Any] = Future()
        with self._changed:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            rank = began if began is not None else time.monotonic()
            heapq.heappush(self._pending, (rank, next(self._order), future, fn, args, kwargs))
            self._changed.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._changed:
            self._closed = True
            if cancel_futures:
                for _, _, future, *_ in self._pending:
                    future.cancel()
                self._pending.clear()
            self._changed.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        if self._initializer is not None:
            self._initializer()
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if not self._pending:  # closed, and nothing left to run
                    return
                _, _, future, fn, args, kwargs = heapq.heappop(self._pending)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the waiting caller, as ThreadPoolExecutor does
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, fn, args, kwargs  # drop references before waiting for the next task


def lower_priority(niceness: int) -> None:
    """Give the calling thread this nice value; a pool's initializer. Linux only: there a thread has its own nice
    value, set by its id; elsewhere that id could name a process."""
    if niceness <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError as exc:  # e.g. a sandbox that forbids it: the pool works the same, less politely
        log.warning("could not lower the CPU pool's priority: %s", exc)
