"""`python -m app forget ID [--source-id] [--block --reason TEXT] [--orphan]` and `python -m app unblock ID`:
an image deleted or taken down from a terminal (docs/removal.md).

Both change the indexes, so they need the index to themselves (like `review decide`): with the local index, run
them while the service is stopped, or use `DELETE /images/{id}` while it runs.
"""

from __future__ import annotations

import argparse
import getpass
import json

from app.config.settings import Settings
from app.domain.errors import ImageNotFound


def add_removal_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    forget = commands.add_parser("forget", help="delete an image (or take it down: --block) from the indexes")
    forget.add_argument("image_id", type=int, help="our image id (or, with --source-id, the upstream row's id)")
    forget.add_argument("--source-id", action="store_true", help="the id is the upstream row's")
    forget.add_argument("--block", action="store_true", help="a takedown: later copies get the verdict `blocked`")
    forget.add_argument("--reason", help="why (kept with the record; sent with every `blocked` verdict)")
    forget.add_argument("--orphan", action="store_true", help="leave its duplicates pointing at nothing")
    forget.add_argument("--as", dest="by", help="who removes it (default: cli:<user>)")
    forget.set_defaults(handler=forget_command)
    unblock = commands.add_parser("unblock", help="lift the takedown of an image")
    unblock.add_argument("image_id", type=int)
    unblock.add_argument("--as", dest="by", help="who lifts it (default: cli:<user>)")
    unblock.set_defaults(handler=unblock_command)


async def forget_command(settings: Settings, args: argparse.Namespace) -> int:
    from app.check.removal import RemovalRequest
    from app.composition import build_container

    by = args.by or f"cli:{getpass.getuser()}"
    async with build_container(settings) as container:
        image_id = args.image_id
        if args.source_id:
            async with container.units() as uow:
                row = await uow.images.get_by_source(image_id)
            if row is None:
                raise ImageNotFound(f"no image with source_id {image_id}")
            image_id = row.image_id
        outcome = await container.removals.remove(
            RemovalRequest(image_id, by, block=args.block, reason=args.reason, orphan=args.orphan)
        )
        await container.index.flush()
    print(
        json.dumps(
            {
                "image_id": outcome.image.image_id,
                "source_id": outcome.image.source_id,
                "action": outcome.action,
                "copies": outcome.copies,
                "successor_id": outcome.successor_id,
                "orphaned": outcome.orphaned,
                "unreachable": outcome.unreachable,
                "repeated": outcome.repeated,
            }
        )
    )
    return 0


async def unblock_command(settings: Settings, args: argparse.Namespace) -> int:
    from app.composition import build_container

    async with build_container(settings) as container:
        if not await container.removals.lift(args.image_id, args.by or f"cli:{getpass.getuser()}"):
            raise ImageNotFound(f"no takedown of image {args.image_id} in force")
    print(f"takedown of image {args.image_id} lifted")
    return 0
