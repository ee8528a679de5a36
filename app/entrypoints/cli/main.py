"""The command line: `python -m app serve | worker | stats | status | recalc | reset-data | reset-vectors |
reindex | backfill | forget | unblock | scan | calibrate | keys | review | migrate`.

Parse arguments, load Settings, hand off to the command's module; every command builds its backends with the
composition root.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from app.config.settings import Settings
from app.domain.errors import AppError, ConfigurationError, InvalidRequest
from app.entrypoints.cli.backfill import add_backfill_command
from app.entrypoints.cli.calibrate import add_calibrate_command
from app.entrypoints.cli.keys import add_keys_command
from app.entrypoints.cli.maintenance import add_maintenance_commands
from app.entrypoints.cli.queue import add_queue_commands
from app.entrypoints.cli.removal import add_removal_commands
from app.entrypoints.cli.review import add_review_commands
from app.entrypoints.cli.run import add_run_commands
from app.entrypoints.cli.scan import add_scan_command
from app.entrypoints.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="imgdedup: image de-duplication service")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_run_commands,
        add_queue_commands,
        add_maintenance_commands,
        add_backfill_command,
        add_calibrate_command,
        add_keys_command,
        add_review_commands,
        add_removal_commands,
        add_scan_command,
    ):
        add(commands)
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
