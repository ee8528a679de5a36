"""`python -m app backfill`: register the history the platform already holds (rows settled before this service),
in upstream order, resumable, never writing upstream (app/ops/backfill.py)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import signal
import sys
import time
from typing import TYPE_CHECKING

from app.config.settings import Settings
from app.domain.errors import ConfigurationError
from app.entrypoints.cli.queue import id_list, when

if TYPE_CHECKING:  # the command's work is imported when it runs, not when the command line starts
    from app.domain.records import HistoricCopy
    from app.ops.adopt import Adoption
    from app.ops.backfill import BackfillResult, BackfillScope
    from app.ports.backends import Embedder


def add_backfill_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backfill = commands.add_parser(
        "backfill", help="register the upstream rows settled before this service (unique and review), oldest first"
    )
    backfill.add_argument(
        "--where-status", help="comma-separated upstream status values (default: the unique and review values)"
    )
    backfill.add_argument("--from", dest="created_from", help="created at or after (ISO time, UTC)")
    backfill.add_argument("--to", dest="created_to", help="created before (ISO time, UTC)")
    backfill.add_argument("--ids", help="comma-separated upstream row ids")
    backfill.add_argument("--report", help="write the historic copies found (and the rows that failed) to this CSV")
    backfill.add_argument("--dry-run", action="store_true", help="count what would be registered, change nothing")
    backfill.add_argument(
        "--adopt",
        action="store_true",
        help="take the vectors the old scripts stored in their DashVector collection instead of embedding again",
    )
    backfill.add_argument("--collection", help="the old collection (default: config.ini's collection_name)")
    backfill.add_argument("--doc-id", default="{id}", help="how the old scripts named a row's doc (default: {id})")
    backfill.set_defaults(handler=_backfill)


def _scope(settings: Settings, args: argparse.Namespace) -> BackfillScope:
    from app.ops.backfill import BackfillScope

    names = settings.queue
    statuses = (
        [s.strip() for s in args.where_status.split(",") if s.strip()]
        if args.where_status
        else [names.status_unique, names.status_review]
    )
    return BackfillScope(
        statuses=statuses,
        created_from=when(args.created_from),
        created_to=when(args.created_to),
        source_ids=id_list(args.ids),
    )


async def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.composition import build_container, open_database
    from app.ops.backfill import backfill, historic_copies, pending_rows

    scope = _scope(settings, args)
    if args.dry_run:
        async with open_database(settings) as database:
            rows = await pending_rows(database.units, scope)
        print(f"{len(rows)} upstream rows would be registered (status {', '.join(scope.statuses)}, not yet ours)")
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # the batches in hand finish, then it stops
        loop.add_signal_handler(signum, stop.set)
    async with build_container(settings) as container:
        rows = await pending_rows(container.units, scope)
        adoption = await _adopt(settings, args, container.embedder, rows) if args.adopt else None
        worker = settings.worker
        started = time.perf_counter()
        with tqdm(total=len(rows), unit="row", desc="backfill", file=sys.stderr) as bar:
            result = await backfill(
                container.service,
                rows,
                batch_size=worker.batch_size,
                concurrency=worker.concurrency,
                stop=stop,
                progress=bar.update,
                vectors=adoption.vectors if adoption else None,
            )
        elapsed = time.perf_counter() - started
    done = result.registered + len(result.copies) + len(result.failed)
    print(
        f"registered {result.registered} rows, {len(result.copies)} historic copies recorded as duplicates, "
        f"{len(result.failed)} failed, in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.1f} rows/s)"
        + (f"; stopped after {done} of {len(rows)}: run again to resume" if stop.is_set() else "")
    )
    if adoption is not None:
        print(
            f"adopted {len(adoption.vectors)} vectors (no embedding call for them); {len(adoption.without_doc)} rows "
            f"had no doc in the old collection and were embedded; the collection holds {adoption.collection_docs} "
            f"docs, {max(adoption.collection_docs - len(adoption.vectors), 0)} of them matching no row adopted"
        )
    if args.report:
        async with open_database(settings, migrate=False) as database:
            copies = await historic_copies(database.units, scope)
        _write_report(args.report, copies, result)
    return 0


async def _adopt(settings: Settings, args: argparse.Namespace, embedder: Embedder, rows: list[int]) -> Adoption:
    from app.composition import build_old_collection
    from app.ops.adopt import adopt

    name = args.collection or settings.legacy.collection
    if not name:
        raise ConfigurationError("which collection? give --collection, or config.ini's [dashvector] collection_name")
    source = build_old_collection(settings, name)
    try:
        return await adopt(source, rows, dimension=embedder.dimension, model=embedder.model_name, doc_id=args.doc_id)
    finally:
        await source.aclose()


def _write_report(path: str, copies: list[HistoricCopy], result: BackfillResult) -> None:
    """Every historic copy in scope (whichever run found it), and the rows this run failed."""
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["source_id", "image_id", "outcome", "matched_source_id", "matched_image_id", "similarity",
                      "decided_by", "error"])  # fmt: skip
        for c in copies:
            out.writerow([c.source_id, c.image_id, "copy", c.matched_source_id, c.matched_image_id, c.similarity,
                          c.decided_by, ""])  # fmt: skip
        for outcome in result.failed:
            source_id = getattr(outcome.item.ref, "source_id", None)
            error = outcome.error
            out.writerow([source_id, "", "failed", "", "", "", "", f"{error.code}: {error.message}" if error else ""])
