"""Backfill benchmark: the same planted rows (each base first, its variants later) registered two ways in one run,
against MariaDB/MySQL and images served over HTTP from a local folder: as drafts drained by `serve`'s scheduler,
and as history the old scripts settled, registered by `python -m app backfill`. Prints both rates, their ratio,
and the copies each found (matched to their own original).

python -m bench.backfill [--rows 1000] [--mysql root@127.0.0.1:3306] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.corpus import corpus_arguments, parse
from bench.drain import _fresh_queue, _outcomes_then_drop, _service_env, drained_by_serve, plant, serve_planted


def _found(order: list[tuple[str, str, bool]], rows: list[sa.Row[Any]]) -> str:
    original = {b: r.image_id for (_, b, o), r in zip(order, rows, strict=True) if o}
    copies = [(b, r) for (_, b, o), r in zip(order, rows, strict=True) if not o]
    found = sum(r.verdict == "duplicate" and r.matched_image_id == original[b] for b, r in copies)
    wrong = sum(r.verdict == "duplicate" for (_, _, o), r in zip(order, rows, strict=True) if o)
    return f"copies found {found}/{len(copies)}, originals marked duplicate {wrong}/{len(original)}"


def _backfill(env: dict[str, str]) -> float:
    """The backfill's own time, from its first row (the model loaded, as for the drain), as it prints it."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "backfill"], env=env, check=True, capture_output=True, text=True
    )
    summary = done.stdout.strip().splitlines()[-1]
    return float(summary.split(", in ", 1)[1].split(" s", 1)[0])


async def run(args: argparse.Namespace) -> None:
    order = plant(args.corpus, args.cache, args.rows)
    urls = [p for p, _, _ in order]
    with tempfile.TemporaryDirectory(prefix="imgdedup-backfill-") as tmp:
        server = serve_planted(order, args, Path(tmp))
        figures = {}
        for way in ("drain", "backfill"):
            database = f"imgdedup_{way}_bench"
            admin = await _fresh_queue(args, database, urls)
            (Path(tmp) / way).mkdir()
            env = _service_env(args, Path(tmp) / way, database, server.server_address[1])
            if way == "drain":
                elapsed = await drained_by_serve(env)
            else:
                async with admin.connect() as c:  # as the old scripts left them: settled, unique
                    await c.execute(sa.text(f"UPDATE {database}.images SET status='tag_extension', similarity='done'"))
                elapsed = await asyncio.to_thread(_backfill, env)
            rows = await _outcomes_then_drop(admin, database)
            figures[way] = len(rows) / elapsed
            print(f"{way}: {len(rows)} rows in {elapsed:.1f} s, {figures[way]:.1f} rows/s; {_found(order, rows)}")
        server.shutdown()
    print(f"backfill / drain: {figures['backfill'] / figures['drain']:.2f}")


def main() -> None:
    parser = corpus_arguments(__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--mysql", default="root@127.0.0.1:3306")
    parser.add_argument("--env", action="append", default=[], help="APP_...=value for both")
    asyncio.run(run(parse(parser)))


if __name__ == "__main__":
    main()
