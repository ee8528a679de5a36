"""The CPU pools' order: the waiting task of the oldest check runs first, on real threads."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from app.runtime.oldest_first import OldestFirstPool, checking, lower_priority


def _blocked_pool() -> tuple[OldestFirstPool, threading.Event]:
    """A one-thread pool whose thread is busy until the event is set: what is submitted meanwhile waits."""
    pool = OldestFirstPool(1, "test")
    release = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    pool.submit(hold)
    assert started.wait(10)
    return pool, release


class Checks:
    """Contexts in which a check has begun (as a request's task would be); each left again at the test's end."""

    def __init__(self) -> None:
        self._open: list[tuple[contextvars.Context, contextlib.AbstractContextManager[None]]] = []

    def begin(self, within: contextvars.Context | None = None) -> contextvars.Context:
        context = within.copy() if within is not None else contextvars.copy_context()
        check = checking()
        context.run(check.__enter__)
        self._open.append((context, check))
        time.sleep(0.002)  # the next check begins measurably later
        return context

    def leave_all(self) -> None:
        for context, check in reversed(self._open):
            context.run(check.__exit__, None, None, None)


@pytest.fixture
def checks() -> Iterator[Checks]:
    made = Checks()
    yield made
    made.leave_all()


def test_the_oldest_checks_waiting_tasks_run_first_and_each_checks_in_submission_order(checks: Checks) -> None:
    pool, release = _blocked_pool()
    older, newer = checks.begin(), checks.begin()
    ran: list[str] = []
    futures = [
        newer.run(pool.submit, ran.append, "newer 1"),
        older.run(pool.submit, ran.append, "older 1"),
        newer.run(pool.submit, ran.append, "newer 2"),
        older.run(pool.submit, ran.append, "older 2"),
    ]
    release.set()
    for future in futures:
        future.result(10)
    pool.shutdown()
    assert ran == ["older 1", "older 2", "newer 1", "newer 2"]


def test_a_task_outside_any_check_waits_behind_the_checks_begun_before_it(checks: Checks) -> None:
    pool, release = _blocked_pool()
    check = checks.begin()
    ran: list[str] = []
    outside = pool.submit(ran.append, "outside")
    inside = check.run(pool.submit, ran.append, "check")
    release.set()
    outside.result(10), inside.result(10)
    pool.shutdown()
    assert ran == ["check", "outside"]


def test_a_check_inside_a_check_keeps_the_outer_ones_moment(checks: Checks) -> None:
    pool, release = _blocked_pool()
    outer = checks.begin()
    later = checks.begin()
    nested = checks.begin(within=outer)  # the outer check's context entered again, later: its moment stands
    ran: list[str] = []
    futures = [later.run(pool.submit, ran.append, "later"), nested.run(pool.submit, ran.append, "nested")]
    release.set()
    for future in futures:
        future.result(10)
    pool.shutdown()
    assert ran == ["nested", "later"]


def test_a_failing_task_hands_its_error_to_the_caller_and_the_pool_goes_on() -> None:
    pool = OldestFirstPool(2, "test")

    def fail() -> None:
        raise ValueError("broken image")

    with pytest.raises(ValueError, match="broken image"):
        pool.submit(fail).result(10)
    assert pool.submit(lambda: 6 * 7).result(10) == 42
    pool.shutdown()


def test_shutdown_runs_what_waits_then_refuses_more_and_can_cancel_instead() -> None:
    pool, release = _blocked_pool()
    waiting = pool.submit(lambda: "done")
    release.set()
    pool.shutdown(wait=True)
    assert waiting.result(0) == "done"
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)

    pool, release = _blocked_pool()
    dropped = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert dropped.cancelled()


def test_the_checks_gathered_coroutines_submit_with_the_checks_moment() -> None:
    """As in the service: a check's gathered stages inherit its context, so its tasks keep its rank."""

    async def scenario() -> list[str]:
        pool, release = _blocked_pool()
        loop = asyncio.get_running_loop()
        ran: list[str] = []

        async def check(name: str, delay: float) -> None:
            with checking():
                await asyncio.sleep(delay)  # the later check's tasks are submitted first
                await asyncio.gather(*(loop.run_in_executor(pool, ran.append, f"{name} {i}") for i in range(2)))

        first = asyncio.create_task(check("older", 0.05))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(check("newer", 0.0))
        await asyncio.sleep(0.1)  # both have submitted by now; the pool is still held
        release.set()
        await asyncio.gather(first, second)
        pool.shutdown()
        return ran

    assert asyncio.run(scenario()) == ["older 0", "older 1", "newer 0", "newer 1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_pool_threads_run_at_the_niceness_given_and_the_caller_keeps_its_own() -> None:
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = OldestFirstPool(2, "test", lambda: lower_priority(own + 7))
    seen = {
        pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result(10) for _ in range(4)
    }
    pool.shutdown()
    assert seen == {min(own + 7, 19)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
