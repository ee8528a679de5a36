"""`python -m app serve | migrate`: parse arguments, load Settings, hand off."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from app.domain.errors import ConfigurationError
from app.settings import Settings


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from app.api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
    )


def _migrate(settings: Settings, _: argparse.Namespace) -> None:
    from app.db.engine import make_engine
    from app.db.migrate import upgrade

    async def run() -> None:
        engine = make_engine(settings.database_url)
        try:
            await upgrade(engine, settings)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print(f"database at {settings.database_url.split('@')[-1]} is at the latest schema")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="imgdedup: image de-duplication service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=_serve)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"APP_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        print(f"configuration error: {problems}", file=sys.stderr)
        return 2
    try:
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for noisy in ("alembic", "faiss.loader"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        args.handler(settings, args)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
