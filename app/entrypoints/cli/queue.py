"""`python -m app stats | status | recalc`: the queue as the old scripts' users read it, and re-queueing."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from app.config.settings import Settings


def add_queue_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stats = commands.add_parser("stats", help="queue counts, failures and throughput as a table")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=_stats)
    status = commands.add_parser("status", help="the verdict of one image (our image_id, or --source)")
    status.add_argument("id", type=int)
    status.add_argument("--source", action="store_true", help="the id is the upstream queue row's")
    status.set_defaults(handler=_status)
    recalc = commands.add_parser("recalc", help="re-queue recalc and failed rows")
    recalc.add_argument("--source-ids", help="comma-separated upstream row ids")
    recalc.add_argument("--from", dest="created_from", help="created at or after (ISO time, UTC)")
    recalc.add_argument("--to", dest="created_to", help="created before (ISO time, UTC)")
    recalc.add_argument("--include-done", action="store_true", help="also rows that already have a verdict")
    recalc.set_defaults(handler=_recalc)


async def _stats(settings: Settings, args: argparse.Namespace) -> None:
    from app.composition import open_database
    from app.ops.stats import collect_database_stats

    async with open_database(settings) as database:
        stats = await collect_database_stats(database.units, settings.queue)
    if args.json:
        print(json.dumps(stats, indent=2, default=str))
        return
    q, names = stats["queue"], settings.queue
    rows = [(r[names.status_column], r[names.similarity_column], r["rows"]) for r in q["by_status"]]
    width = max([len(names.status_column), *(len(r[0]) for r in rows)]) + 2
    print(f"{names.status_column:<{width}}{names.similarity_column:<12}{'rows':>10}")
    print("-" * (width + 22))
    for status, similarity, n in rows:
        print(f"{status:<{width}}{similarity:<12}{n:>10}")
    print("-" * (width + 22))
    print(f"{'total':<{width + 12}}{sum(r[2] for r in rows):>10}")
    print(f"\nwaiting: {q['waiting']} (oldest {q['oldest_waiting_seconds']:.0f} s)")
    print(f"accepted images: {stats['accepted_images']}")
    t = stats["throughput"]
    print(f"checked: {t['checked_last_minute']} in the last minute, {t['checked_last_hour']} in the last hour")
    for state, reasons in q["failures_by_reason"].items():
        print(f"{state}: " + ", ".join(f"{code} {n}" for code, n in sorted(reasons.items())))


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    from app.composition import open_database

    async with open_database(settings) as database, database.units() as uow:
        row = await (uow.images.get_by_source(args.id) if args.source else uow.images.get(args.id))
        url = await uow.queue.url_of(args.id) if args.source else None
    if row is None:
        what = (
            f"source_id {args.id}" + (" (a queue row not checked yet)" if url else "")
            if args.source
            else (f"image_id {args.id}")
        )
        print(f"no image with {what}", file=sys.stderr)
        return 1
    for field in (
        "image_id",
        "source_id",
        "source_url",
        "verdict",
        "decided_by",
        "similarity",
        "matched_image_id",
        "phash_distance",
        "accepted",
        "model",
        "state",
        "attempts",
        "error_code",
        "last_error",
        "created_at",
        "checked_at",
    ):
        print(f"{field:>17}: {getattr(row, field)}")
    return 0


def id_list(text: str | None) -> list[int] | None:
    """A comma-separated list of upstream row ids, or none given."""
    return [int(x) for x in text.split(",")] if text else None


def when(text: str | None) -> datetime | None:
    """A --from / --to option: an ISO time, or none given."""
    return datetime.fromisoformat(text) if text else None


async def _recalc(settings: Settings, args: argparse.Namespace) -> None:
    from app.composition import open_database

    ids = id_list(args.source_ids)
    async with open_database(settings) as database, database.units() as uow:
        count = await uow.queue.requeue(ids, when(args.created_from), when(args.created_to), args.include_done)
        await uow.commit()
    print(f"re-queued {count} rows")
