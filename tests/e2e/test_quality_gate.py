"""The quality gate: a mini benchmark on the committed photos, through the real service with its shipped defaults
(real model, FAISS, verification and second look, SQLite). 40 indexed photos with six transforms each, the 9
other photos (and their transforms) as distractors; and six hard-negative pairs, each checked both ways: states
of one dialog, two dialogs of one style, two halves of one painting, two photos of one scene from one tripod.
Recall and precision must stay above floors set from the figures measured when it was written (recall 0.967,
precision 1.000 on 240 copies; per transform resize 1.00, crop 0.975, text 0.975, border 0.95, rotate 0.975,
screenshot 0.925), so that a change that costs accuracy fails `make test`; the full benchmark (`make bench`)
measures the rest."""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from app.composition import build_container
from app.config.settings import DbSettings, Settings
from app.domain.models import CheckItem, UploadRef
from bench.window_states import draw, first_state, second_state
from testkit.images import PHOTOS, jpeg, photo
from testkit.variants import check_fonts, variant

TRANSFORMS = ("resize", "crop", "text", "border", "rotate", "screenshot")
# Distinct pictures that share most of what they show: two states of one dialog (assign and convert a profile),
# two dialogs in one window style, two halves of one painting, two photos of one scene from one tripod (the
# blocks ABC and 123). The dev pairs with the highest cosine under the shipped model (0.87-0.94).
HARD_NEGATIVES = (
    ("b0269", "b0271"),
    ("b0269", "b0272"),
    ("b0271", "b0272"),
    ("b0242", "b0277"),
    ("b0348", "b0349"),
    ("b0012", "b0050"),
)
INDEXED = 40
RECALL_FLOOR = 0.94
PRECISION_FLOOR = 0.99


def photos() -> list[str]:
    with open(PHOTOS / "SOURCES.csv", newline="") as handle:
        return [row["base_id"] for row in csv.DictReader(handle) if row["role"] == "photo"]


def copies(base_id: str) -> list[tuple[str, bytes]]:
    image = photo(base_id)
    made = []
    for transform in TRANSFORMS:
        changed, _ = variant(image, base_id, transform)
        made.append((transform, jpeg(changed.convert("RGB"), 90)))
    return made


async def check_all(service, items: list[bytes], register: bool, batch: int = 16):  # type: ignore[no-untyped-def]
    verdicts = []
    for start in range(0, len(items), batch):
        outcomes = await service.check([CheckItem(UploadRef(d), register) for d in items[start : start + batch]])
        for outcome in outcomes:
            assert outcome.verdict is not None, outcome.error
            verdicts.append(outcome.verdict)
    return verdicts


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_quality_gate_recall_and_precision_stay_above_their_floors(
    make_settings: Callable[..., Settings],
) -> None:
    check_fonts()
    ids = photos()
    indexed, distractors = ids[:INDEXED], ids[INDEXED:]
    async with build_container(make_settings()) as container:
        service = container.service
        registered = await check_all(service, [jpeg(photo(b)) for b in indexed], register=True)
        assert [v.label.value for v in registered].count("duplicate") == 0, "distinct photos registered as copies"
        original = {v.image_id: b for v, b in zip(registered, indexed, strict=True)}

        queries = [(b, t, data) for b in indexed for t, data in copies(b)]
        negatives = [(b, "base", jpeg(photo(b))) for b in distractors]
        negatives += [(b, t, data) for b in distractors for t, data in copies(b)]
        verdicts = await check_all(service, [q[2] for q in queries + negatives], register=False)

        answers = list(zip(queries, verdicts[: len(queries)], strict=True))
        right = [
            (t, v.label.value == "duplicate" and original.get(v.matched_image_id) == b) for (b, t, _), v in answers
        ]
        duplicates = sum(v.label.value == "duplicate" for v in verdicts)
        recall = sum(ok for _, ok in right) / len(queries)
        precision = sum(ok for _, ok in right) / duplicates if duplicates else 1.0
        per_transform = {t: sum(ok for tt, ok in right if tt == t) / INDEXED for t in TRANSFORMS}
        print(f"quality gate: recall {recall:.3f}, precision {precision:.3f}, per transform {per_transform}")
        assert recall >= RECALL_FLOOR, per_transform
        assert precision >= PRECISION_FLOOR


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("pair", HARD_NEGATIVES, ids=["-".join(p) for p in HARD_NEGATIVES])
async def test_quality_gate_hard_negatives_are_never_duplicates(
    make_settings: Callable[..., Settings], tmp_path: Path, pair: tuple[str, str]
) -> None:
    """Each way round (verification is not symmetric), on an index that holds the one picture alone."""
    for kept_id, other_id in (pair, pair[::-1]):
        where = tmp_path / f"{kept_id}-first"
        settings = make_settings(data_dir=where, db=DbSettings(url=f"sqlite+aiosqlite:///{where}.db"))
        async with build_container(settings) as container:
            kept = (await check_all(container.service, [jpeg(photo(kept_id))], register=True))[0]
            other = (await check_all(container.service, [jpeg(photo(other_id))], register=False))[0]
        assert kept.label.value == "unique"
        assert other.label.value != "duplicate", (kept_id, other_id, other)


# Windows drawn in two states with a small change (bench/window_states.py, a family of the gate's own): 9 pairs.
# When this was written none of the 9 second states came out a duplicate (9 of 9 without the screen comparison,
# all by pHash), and the copies of the first states all stayed duplicates. A changed value or line of text can
# be a few pixels of the thumbnail: one of them may slip.
WINDOW_CHANGES = ("check", "value", "text")
WINDOW_PAIRS = 9
WINDOW_DUPLICATES_CEILING = 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_quality_gate_windows_in_another_state_are_not_duplicates(make_settings: Callable[..., Settings]) -> None:
    check_fonts()
    firsts, seconds = [], []
    for n in range(WINDOW_PAIRS):
        rng = random.Random(f"quality-gate-windows:{n}")
        window = first_state(rng)
        firsts.append(draw(window))
        seconds.append(draw(second_state(window, WINDOW_CHANGES[n % len(WINDOW_CHANGES)], rng)))
    async with build_container(make_settings()) as container:
        # one at a time: windows of one style share their layout, and a later one may be held for review beside
        # an earlier one (never a duplicate of it)
        registered = await check_all(container.service, [jpeg(w) for w in firsts], register=True, batch=1)
        assert all(v.label.value != "duplicate" for v in registered), registered
        states = await check_all(container.service, [jpeg(w, 85) for w in seconds], register=False)
        copies_ = await check_all(container.service, [jpeg(w, 50) for w in firsts], register=False)
    duplicates = [(n, v.decided_by.value) for n, v in enumerate(states) if v.label.value == "duplicate"]
    print(f"quality gate, windows: {len(duplicates)} of {WINDOW_PAIRS} second states duplicate {duplicates}")
    assert len(duplicates) <= WINDOW_DUPLICATES_CEILING, duplicates
    assert [v.matched_image_id for v in copies_] == [v.image_id for v in registered]
