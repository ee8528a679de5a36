"""`python -m app review list | decide | undo`: the review band from a terminal.

Deciding changes the indexes, so it needs the index to itself (like reset-vectors): with the local index, run it
while the service is stopped, or use the page or the API (`POST /reviews/{image_id}`) while it runs.
"""

from __future__ import annotations

import argparse
import getpass
import json

from app.config.settings import Settings
from app.domain.review import Choice


def add_review_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    review = commands.add_parser("review", help="the review band: list, decide, undo")
    actions = review.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="verdicts waiting for a person, oldest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    decide = actions.add_parser("decide", help="settle one: duplicate (of its candidate, or --of) or distinct")
    decide.add_argument("image_id", type=int)
    decide.add_argument("decision", choices=[c.value for c in Choice])
    decide.add_argument("--of", type=int, help="the candidate (default: the one the verdict names)")
    decide.add_argument("--version", type=int, help="the version you looked at (default: the current one)")
    decide.add_argument("--as", dest="reviewer", help="who decides (default: cli:<user>)")
    undo = actions.add_parser("undo", help="undo your last decision")
    undo.add_argument("--as", dest="reviewer", help="whose last decision (default: cli:<user>)")
    review.set_defaults(handler=review_command)


async def review_command(settings: Settings, args: argparse.Namespace) -> int:
    from app.composition import build_container

    reviewer = getattr(args, "reviewer", None) or f"cli:{getpass.getuser()}"
    async with build_container(settings, writes_index=args.action != "list") as container:
        reviews = container.reviews
        if args.action == "list":
            items = await reviews.pending(limit=args.limit)
            rows = [
                {
                    "image_id": i.image.image_id,
                    "source_id": i.image.source_id,
                    "version": i.image.version,
                    "similarity": i.image.similarity,
                    "phash_distance": i.image.phash_distance,
                    "candidate": i.candidate.image_id if i.candidate else None,
                    "machine_guess": i.guess.value,
                    "checked_at": i.image.checked_at.isoformat() if i.image.checked_at else None,
                }
                for i in items
            ]
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            print(f"{'image':>8} {'source':>8} {'ver':>4} {'cosine':>7} {'pHash':>5} {'candidate':>9}  guess")
            for r in rows:
                cosine = f"{r['similarity']:.4f}" if r["similarity"] is not None else "-"
                print(
                    f"{r['image_id']:>8} {r['source_id'] or '-':>8} {r['version']:>4} {cosine:>7} "
                    f"{r['phash_distance'] if r['phash_distance'] is not None else '-':>5} "
                    f"{r['candidate'] or '-':>9}  {r['machine_guess']}"
                )
            print(f"{len(rows)} waiting")
            return 0
        if args.action == "decide":
            version = args.version
            if version is None:
                async with container.units() as uow:
                    row = await uow.images.get(args.image_id)
                version = row.version if row is not None else -1
            settled = await reviews.decide(args.image_id, Choice(args.decision), args.of, version, reviewer)
            print(f"image {settled.image_id}: {settled.verdict} (matched {settled.matched_image_id}), by {reviewer}")
            return 0
        restored = await reviews.undo(reviewer)
        print(f"undone: image {restored.image_id} is {restored.verdict} again")
        return 0
