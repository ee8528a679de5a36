"""`python -m app serve | worker`: the service, and the scheduler as its own process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time

from app.config.settings import Settings
from app.domain.errors import ConfigurationError


def add_run_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="run the HTTP API (and the scheduler, unless APP_WORKER__ENABLED=false)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=_serve)
    worker = commands.add_parser("worker", help="drain the draft queue in this process")
    worker.add_argument("--no-register", action="store_true", help="record verdicts, add nothing to the indexes")
    worker.add_argument("--once", action="store_true", help="exit when nothing is due")
    worker.set_defaults(handler=_worker)


async def _bind_policy(settings: Settings) -> None:
    """Without API keys the service is open, so it may listen on loopback alone."""
    from app.composition import open_database
    from app.ops.keys import any_active_key

    async with open_database(settings) as database:
        keys = await any_active_key(database.units)
    if keys:
        return
    if not settings.listens_on_loopback_only:
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
