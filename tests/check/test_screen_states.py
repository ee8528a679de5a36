"""Another state of a screen, through the real service (real model, FAISS, verification, SQLite and MariaDB):
a window drawn again with a box ticked goes to review, beside the window it is another state of; a re-encoded or
resized copy of the window stays a duplicate; the setting turns it off."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from PIL import Image

from app.composition import build_container
from app.config.settings import Settings, VerifySettings
from app.domain.models import CheckItem, UploadRef, Verdict
from bench.window_states import draw, first_state, second_state
from testkit.images import jpeg, resized
from testkit.variants import check_fonts


@pytest.fixture(scope="module", autouse=True)
def fonts() -> None:
    check_fonts()


def states(n: int) -> tuple[Image.Image, Image.Image]:
    rng = random.Random(f"screen-states-test:{n}")
    first = first_state(rng)
    return draw(first), draw(second_state(first, "check", rng))


def item(data: bytes) -> CheckItem:
    return CheckItem(UploadRef(data), register=True)


async def test_a_window_in_another_state_goes_to_review_and_its_copies_stay_duplicates(
    make_settings: Callable[..., Settings],
) -> None:
    async with build_container(make_settings()) as container:
        check = container.service.check
        first, second = states(0)
        (original,) = await check([item(jpeg(first, quality=92))])
        assert original.verdict is not None and original.verdict.label.value == "unique"
        original_id = original.verdict.image_id

        (ticked,) = await check([item(jpeg(second, quality=90))])
        verdict: Verdict | None = ticked.verdict
        assert verdict is not None
        assert (verdict.label.value, verdict.decided_by.value, verdict.matched_image_id) == (
            "review",
            "other_state",
            original_id,
        )
        # the ticked window again, smaller: a copy of the ticked one (held for review, and so in the indexes)
        (again,) = await check([item(jpeg(resized(second, 0.6), quality=60))])
        assert again.verdict is not None
        assert (again.verdict.label.value, again.verdict.matched_image_id) == ("duplicate", verdict.image_id)

        for copy in (jpeg(first, quality=40), jpeg(resized(first, 0.5), quality=85)):
            (found,) = await check([item(copy)])
            assert found.verdict is not None
            assert (found.verdict.label.value, found.verdict.matched_image_id) == ("duplicate", original_id)


async def test_without_the_screen_comparison_the_other_state_is_a_duplicate(
    make_settings: Callable[..., Settings],
) -> None:
    """What the comparison is for: the shipped routes alone call such a pair a copy."""
    settings = make_settings(verify=VerifySettings(screen_states=False))
    async with build_container(settings) as container:
        first, second = states(0)
        await container.service.check([item(jpeg(first, quality=92))])
        (ticked,) = await container.service.check([item(jpeg(second, quality=90))])
        assert ticked.verdict is not None and ticked.verdict.label.value == "duplicate"
