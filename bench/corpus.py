"""The labelled corpus and the protocol's fixed rules (docs/benchmark-protocol.md)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.fetch_corpus import fetch


def is_indexed(base_id: str) -> bool:
    return int(hashlib.sha256(f"dev-index:{base_id}".encode()).hexdigest(), 16) % 3 != 0


def fold_of(base_id: str) -> int:
    return int(hashlib.sha256(f"dev-fold:{base_id}".encode()).hexdigest(), 16) % 2


@dataclass(frozen=True)
class Query:
    path: Path
    base_id: str
    transform: str  # "base" for a distractor base itself
    expected_duplicate: bool


@dataclass(frozen=True)
class Corpus:
    indexed: list[tuple[str, Path]]
    queries: list[Query]


def ensure_variants(
    corpus_dir: Path, cache_dir: Path, generator: str = "testkit.variants", kind: str = "variants"
) -> Path:
    """The variants of the corpus's bases made by `generator` (a module run as BASE_DIR OUT_DIR), once."""
    out = cache_dir / f"{corpus_dir.name}-{kind}"
    if not (out / "labels.csv").exists():
        print(f"generating {kind} into {out} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", generator, str(corpus_dir / "base"), str(out)], check=True)
    return out


def _labelled(variants_dir: Path) -> list[Query]:
    with open(variants_dir / "labels.csv", newline="") as handle:
        return [
            Query(
                variants_dir / "variants" / row["variant_file"],
                row["base_id"],
                row["transform"],
                is_indexed(row["base_id"]),
            )
            for row in csv.DictReader(handle)
        ]


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse a bench command's arguments; without --corpus, the dev split built by bench.fetch_corpus (copied from
    ../shared when it is there, else rebuilt from its packages)."""
    args = parser.parse_args()
    if args.corpus is None:
        args.corpus = fetch()
    return args


def load_corpus(corpus_dir: Path, cache_dir: Path) -> Corpus:
    variants_dir = ensure_variants(corpus_dir, cache_dir)
    bases = sorted(p.stem for p in (corpus_dir / "base").glob("*.jpg"))
    indexed = [(b, corpus_dir / "base" / f"{b}.jpg") for b in bases if is_indexed(b)]
    queries = _labelled(variants_dir)
    queries += [Query(corpus_dir / "base" / f"{b}.jpg", b, "base", False) for b in bases if not is_indexed(b)]
    return Corpus(indexed, queries)


def load_extra(corpus_dir: Path, cache_dir: Path) -> list[Query]:
    """The extra corpus's queries: variants of the same bases in families nothing is fitted on
    (bench/extra_variants.py); a variant of an indexed base is a copy, one of a distractor is not."""
    return _labelled(ensure_variants(corpus_dir, cache_dir, "bench.extra_variants", "extra"))


def load_window_states(cache_dir: Path, pairs: int = 40) -> Corpus:
    """The window-state hard negatives (bench/window_states.py), made once: the first state of each pair to
    register, the second state's queries (never duplicates) and the first state's overlaid copies."""
    out = cache_dir / f"window-states-{pairs}"
    if not (out / "labels.csv").exists():
        print(f"generating window states into {out} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "bench.window_states", str(out), "--pairs", str(pairs)], check=True)
    indexed = [(p.stem, p) for p in sorted((out / "bases").glob("*.png"))]
    with open(out / "labels.csv", newline="") as handle:
        queries = [
            Query(
                out / "queries" / row["query_file"], row["base_id"], row["transform"], row["expected_duplicate"] == "1"
            )
            for row in csv.DictReader(handle)
        ]
    return Corpus(indexed, queries)


def corpus_arguments(description: str | None) -> argparse.ArgumentParser:
    """A parser with the options every bench command shares: which corpus, and where its variants are cached."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--corpus", type=Path, default=None, help="base/ and bases.csv (default: the dev split, fetched once)"
    )
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"), help="where variants are generated")
    return parser
