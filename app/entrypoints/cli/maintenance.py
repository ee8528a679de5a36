"""`python -m app reset-data | reset-vectors | reindex | migrate | migrate-blobs`: maintenance, asking first where
it destroys."""

from __future__ import annotations

import argparse
import contextlib
import sys

from app.config.settings import Settings


def add_maintenance_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)
    blobs = commands.add_parser(
        "migrate-blobs",
        help="move thumbnails and previews still held in the database into the blob store, and keep the local "
        "features of accepted images stored before they were kept",
    )
    blobs.set_defaults(handler=_migrate_blobs)


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

    from app.composition import build_container, forget_local_snapshot
    from app.ops.maintenance import accepted_count, rebuild_index

    if not _confirmed("The vector index is cleared and rebuilt from the stored embeddings.", args.yes):
        return 1
    forget_local_snapshot(settings)  # the embedded index starts empty: its cells are trained afresh
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


async def _migrate_blobs(settings: Settings, _: argparse.Namespace) -> int:
    """Resumable: a row moved holds no bytes any more, and an image whose features are kept names them, so a second
    run takes up where the first stopped."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from app.check.stored_bytes import StoredBytes
    from app.composition import build_blobs, open_database
    from app.ops.reconcile import keep_features, move_blobs_out

    blobs = build_blobs(settings)
    if blobs is None:
        print("the blob store is off (APP_BLOBS__KIND=database, or auto with a shared index): nothing to move")
        return 2
    async with open_database(settings) as database:
        with tqdm(unit="blob", desc="moving thumbnails and previews") as bar:
            moved = await move_blobs_out(database.units, StoredBytes(blobs), bar.update)
        with (
            ThreadPoolExecutor(settings.decode.threads) as executor,
            tqdm(unit="image", desc="keeping accepted images' local features") as bar,
        ):
            kept = await keep_features(database.units, StoredBytes(blobs), executor, bar.update)
    await blobs.aclose()
    print(
        f"{moved} thumbnails and previews moved to {settings.blob_dir}, and the local features of {kept} accepted "
        "images kept there; the database gives the moved bytes' space back after VACUUM (SQLite) or OPTIMIZE TABLE "
        "thumbnail, preview (MySQL)"
    )
    return 0
