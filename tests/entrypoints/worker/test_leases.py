"""Leases are fenced and kept: a long batch renews its leases so no other worker takes its rows, and a batch that
lost its lease anyway (it outlived it, another worker re-claimed) writes nothing back, so the row keeps the
other worker's outcome and never ends with a final status beside a non-final similarity."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa

from app.composition import Container, build_container
from app.config.settings import FetchSettings, Settings, WorkerSettings
from app.db.engine import make_engine
from app.entrypoints.worker.drain import ClaimOrder, drain_once
from testkit.image_server import ImageServer
from testkit.queue import DISTINCT_BASES, outcomes, plant_queue

FINAL = {"similarity", "tag_extension", "review"}


def settings_for(make_settings: Callable[..., Settings], server: ImageServer, lease_seconds: float) -> Settings:
    return make_settings(
        fetch=FetchSettings(cdn_base=server.url("/cdn/"), allow_private_hosts=["127.0.0.1"]),
        worker=WorkerSettings(enabled=False, batch_size=10, lease_seconds=lease_seconds),
    )


@contextlib.asynccontextmanager
async def two_workers_one_stalled(
    settings: Settings,
) -> AsyncIterator[tuple[Container, Container, asyncio.Task[int], asyncio.Event]]:
    """Two workers on one queue; the first has claimed a batch and holds it before deciding, until the gate is
    set (its claim order says an earlier batch is not done)."""
    async with (
        build_container(settings, writes_index=False) as first,
        build_container(settings, writes_index=False) as second,
    ):
        order, gate = ClaimOrder(), asyncio.Event()
        order.last_done = gate
        stalled = asyncio.create_task(drain_once(first, register=False, order=order))
        await wait_for(lambda rows: all(r["lease_until"] is not None for r in rows.values()), settings)
        yield first, second, stalled, gate


async def wait_for(condition: Callable[[dict[int, dict[str, object]]], bool], settings: Settings) -> None:
    for _ in range(400):
        if condition(await outcomes(settings)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(await outcomes(settings))


def assert_consistent(rows: dict[int, dict[str, object]]) -> None:
    for row in rows.values():
        assert (row["status"] in FINAL) == (row["similarity"] == "done"), row


async def test_a_long_batch_renews_its_leases_so_no_one_else_takes_its_rows(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    settings = settings_for(make_settings, server, lease_seconds=0.6)  # renewed every 0.2 s
    planted = await plant_queue(settings, server, DISTINCT_BASES[:3], copies=0)
    async with two_workers_one_stalled(settings) as (_, second, slow, gate):
        await asyncio.sleep(1.5)  # what is tested is this time passing: 2.5 leases' worth
        assert await drain_once(second, register=False) == 0  # every lease still held
        gate.set()
        assert await slow == len(planted)
    rows = await outcomes(settings)
    assert all(r["similarity"] == "done" and r["lease_until"] is None for r in rows.values()), rows
    assert_consistent(rows)


@pytest.mark.parametrize("lost", ["all", "one"])
async def test_a_batch_that_lost_leases_writes_back_only_the_rows_it_still_holds(
    make_settings: Callable[..., Settings], server: ImageServer, lost: str
) -> None:
    settings = settings_for(make_settings, server, lease_seconds=300)
    planted = await plant_queue(settings, server, DISTINCT_BASES[:3], copies=0)
    async with two_workers_one_stalled(settings) as (first, second, stale, gate):
        # the first worker's leases (or the first row's alone) run out, as after a long stall: the clock is moved
        # past them
        taken = sorted(await outcomes(settings))[: len(planted) if lost == "all" else 1]
        engine = make_engine(settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("UPDATE image SET lease_until = '2000-01-01 00:00:00' WHERE source_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": taken},
            )
        await engine.dispose()
        assert await drain_once(second, register=False) == len(taken)  # the second takes them and finishes
        taken_over = {source_id: row for source_id, row in (await outcomes(settings)).items() if source_id in taken}
        gate.set()
        assert await stale == len(planted)  # the first checked them all, but wrote back only those it held
        held = len(planted) - len(taken)
        assert dict(first.metrics.queue_outcomes) == ({"unique": held} if held else {})
        assert dict(second.metrics.queue_outcomes) == {"unique": len(taken)}
    rows = await outcomes(settings)
    assert {source_id: rows[source_id] for source_id in taken} == taken_over  # the second's outcome stands
    assert all(r["similarity"] == "done" and r["lease_until"] is None for r in rows.values()), rows
    assert_consistent(rows)


async def test_leases_of_a_claim_whose_answer_was_lost_are_taken_back_by_the_same_process(
    make_settings: Callable[..., Settings], server: ImageServer
) -> None:
    """The database commits a claim and goes away before the worker hears of it: the rows are leased to this
    process under a token no batch holds. The next claim takes them back at once, not after the lease (300 s),
    and never a batch still in hand."""
    settings = settings_for(make_settings, server, lease_seconds=300)
    planted = await plant_queue(settings, server, DISTINCT_BASES[:3], copies=0)
    async with build_container(settings, writes_index=False) as container:
        async with container.units() as uow:  # the lost claim
            lost = await uow.queue.claim(len(planted), 300, container.holders.me)
            await uow.commit()
        assert len(lost) == len(planted)
        order, gate = ClaimOrder(), asyncio.Event()
        order.last_done = gate  # the batch stays in hand until the gate opens
        in_hand = asyncio.create_task(drain_once(container, register=False, order=order))
        await wait_for(lambda rows: all(r["lease_until"] is not None for r in rows.values()), settings)
        for _ in range(100):  # the batch in hand has taken them back
            if order.in_hand and not ({c.lease_token for c in lost} & set(order.in_hand)):
                break
            await asyncio.sleep(0.05)
        assert await drain_once(container, register=False, order=order) == 0  # never the batch in hand
        gate.set()
        assert await in_hand == len(planted)
    rows = await outcomes(settings)
    assert all(r["similarity"] == "done" and r["lease_until"] is None for r in rows.values()), rows
    assert_consistent(rows)
