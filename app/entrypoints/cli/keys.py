"""`python -m app keys add | list | revoke`: API keys, shown once, stored as their hash."""

from __future__ import annotations

import argparse
import sys

from app.config.settings import Settings


def add_keys_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = commands.add_parser("keys", help="API keys: add (prints the key once), list, revoke")
    key_actions = keys.add_subparsers(dest="action", required=True)
    add = key_actions.add_parser("add", help="make a key; it is printed once, only its hash is stored")
    add.add_argument("name")
    add.add_argument("--scopes", required=True, help="comma-separated: check, register, read, admin, review")
    add.add_argument("--rate", type=int, help="requests per minute (default: APP_API__RATE_LIMIT_PER_MINUTE)")
    key_actions.add_parser("list", help="every key, revoked ones too (never the keys themselves)")
    revoke = key_actions.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    keys.set_defaults(handler=_keys)


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from app.composition import open_database
    from app.ops.keys import add_key, list_keys, revoke_key

    async with open_database(settings) as database:
        if args.action == "add":
            key = await add_key(database.units, args.name, args.scopes, args.rate)
            print(key)
            print(f"key {args.name!r} ({args.scopes}) added; this is the only time it is shown", file=sys.stderr)
        elif args.action == "revoke":
            if not await revoke_key(database.units, args.name):
                print(f"no unrevoked key named {args.name!r}", file=sys.stderr)
                return 1
            print(f"key {args.name!r} revoked (in effect within {settings.api.keys_refresh_seconds:g} s)")
        else:
            print(f"{'name':<24}{'scopes':<34}{'rate/min':>9}  {'created':<20}revoked")
            for known in await list_keys(database.units):
                rate = str(known.rate_per_minute or settings.api.rate_limit_per_minute)
                revoked = f"{known.revoked_at:%Y-%m-%d %H:%M:%S}" if known.revoked_at else "-"
                scopes = ",".join(sorted(known.scopes))
                print(f"{known.name:<24}{scopes:<34}{rate:>9}  {known.created_at:%Y-%m-%d %H:%M:%S}  {revoked}")
    return 0
