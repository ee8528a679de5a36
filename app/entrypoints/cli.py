"""The command line: `python -m app serve | worker | stats | status | recalc | reset-data | reset-vectors |
reindex | calibrate | keys | review | migrate`.

Parse arguments, load Settings, hand off; every command builds its backends with the composition root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from datetime import datetime

from pydantic import ValidationError

from app.config.settings import Settings
from app.domain.errors import AppError, ConfigurationError, InvalidRequest
from app.entrypoints.calibrate_cli import add_calibrate_command
from app.entrypoints.keys_cli import add_keys_command
from app.entrypoints.logs import configure_logging
from app.entrypoints.review_cli import add_review_commands


async def _bind_policy(settings: Settings) -> None:
    """Without API keys the service is open, so it may listen on loopback alone."""
    from app.composition import open_database
    from app.entrypoints.api.access import binds_loopback_only
    from app.ops.keys import any_active_key

    async with open_database(settings) as database:
        keys = await any_active_key(database.units)
    if keys:
        return
    if not binds_loopback_only(settings.host):
        raise ConfigurationError(
            f"no API keys exist, so the service may listen on loopback only, not {settings.host}: add a key first "
            "(python -m app keys add NAME --scopes check,register,read,admin) or serve on 127.0.0.1"
        )
    logging.getLogger("app").warning(
        "no API keys exist: listening on %s only, and every caller on this machine has every scope", settings.host
    )


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.entrypoints.api.app import create_app

    settings = settings.model_copy(update={"host": args.host or settings.host, "port": args.port or settings.port})
    asyncio.run(_bind_policy(settings))
    # uvicorn's own access log off: the app writes its own, structured and switchable (APP_ACCESS_LOG)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


async def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from app.composition import build_container
    from app.entrypoints.worker.drain import ClaimOrder, drain_once, new_breaker
    from app.entrypoints.worker.scheduler import run_scheduler

    register = not args.no_register
    async with build_container(settings, writes_index=register) as container:
        if args.once:  # drain until nothing is due, then exit (benchmarks, cron)
            order, breaker = ClaimOrder(), new_breaker(container)

            async def until_empty() -> int:
                total = 0
                while claimed := await drain_once(container, register=register, order=order, breaker=breaker):
                    total += claimed
                return total

            start = time.perf_counter()
            total = sum(await asyncio.gather(*(until_empty() for _ in range(settings.worker.concurrency))))
            elapsed = time.perf_counter() - start
            print(f"processed {total} rows in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.1f} rows/s)")
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_scheduler(container, stop, register=register)


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


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


async def _recalc(settings: Settings, args: argparse.Namespace) -> None:
    from app.composition import open_database

    ids = [int(x) for x in args.source_ids.split(",")] if args.source_ids else None
    async with open_database(settings) as database, database.units() as uow:
        count = await uow.queue.requeue(ids, _when(args.created_from), _when(args.created_to), args.include_done)
        await uow.commit()
    print(f"re-queued {count} rows")


def _confirmed(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print("refusing without confirmation: pass --yes", file=sys.stderr)
        return False
    return input(f"{question} Type 'yes' to go on: ").strip().lower() == "yes"


async def _reset_data(settings: Settings, args: argparse.Namespace) -> int:
    from app.composition import build_container
    from app.ops.maintenance import reset_data

    if not _confirmed("Every queue row goes back to draft and its verdict and vector are deleted.", args.yes):
        return 1
    async with build_container(settings) as container:
        count = await reset_data(
            container.units, container.index, container.embedder.model_name, settings.index.reconcile_hours
        )
    print(f"{count} rows back to draft")
    return 0


async def _reset_vectors(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.composition import build_container
    from app.ops.maintenance import accepted_count, rebuild_index

    if not _confirmed("The vector index is cleared and rebuilt from the stored embeddings.", args.yes):
        return 1
    async with build_container(settings) as container:
        units, index, model = container.units, container.index, container.embedder.model_name
        with tqdm(total=await accepted_count(units), unit="vec", desc="rebuilding index") as bar:
            added = await rebuild_index(units, index, model, bar.update)
    print(f"index rebuilt with {added} vectors")
    return 0


async def _reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Copy the stored embeddings of the configured model into another index backend."""
    from tqdm import tqdm

    from app.composition import build_embedder, build_index, index_writer, open_database, open_index
    from app.config.settings import IndexSettings
    from app.ops.maintenance import accepted_count, fill_index

    target = settings.model_copy(
        update={"index": IndexSettings.model_validate({**settings.index.model_dump(), "kind": args.to})}
    )
    async with open_database(settings) as database, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(index_writer(settings, database, args.to))
        embedder = build_embedder(settings)
        stack.push_async_callback(embedder.aclose)
        index = build_index(target, embedder)
        stack.push_async_callback(index.aclose)
        await open_index(target, index)
        with tqdm(total=await accepted_count(database.units), unit="vec", desc=f"copying to {args.to}") as bar:
            copied = await fill_index(database.units, index, embedder.model_name, bar.update)
    print(f"copied {copied} stored embeddings of {embedder.model_name} into the {args.to} index")
    if args.to != settings.index.kind:
        print(f"now set APP_INDEX__KIND={args.to} and restart")
    return 0


async def _migrate(settings: Settings, _: argparse.Namespace) -> None:
    from app.composition import open_database

    async with open_database(settings, migrate=True):
        pass
    print(f"database at {settings.database_url.split('@')[-1]} is at the latest schema")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="imgdedup: image de-duplication service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API (and the scheduler, unless APP_WORKER__ENABLED=false)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=_serve)
    worker = commands.add_parser("worker", help="drain the draft queue in this process")
    worker.add_argument("--no-register", action="store_true", help="record verdicts, add nothing to the indexes")
    worker.add_argument("--once", action="store_true", help="exit when nothing is due")
    worker.set_defaults(handler=_worker)
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
    for name, handler, text in (
        ("reset-data", _reset_data, "put every queue row back to draft (asks first)"),
        ("reset-vectors", _reset_vectors, "clear the index and rebuild it from stored embeddings (asks first)"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--yes", action="store_true", help="do not ask")
        command.set_defaults(handler=handler)
    reindex = commands.add_parser("reindex", help="copy stored embeddings into another index backend (no embedding)")
    reindex.add_argument("--to", choices=["local", "dashvector"], required=True)
    reindex.set_defaults(handler=_reindex)
    add_calibrate_command(commands)
    add_keys_command(commands)
    add_review_commands(commands)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except (ValidationError, FileNotFoundError) as exc:
        if isinstance(exc, ValidationError):
            message = "; ".join(f"APP_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        else:
            message = str(exc)
        print(f"configuration error: {message}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        result = args.handler(settings, args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except InvalidRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return int(result or 0)
