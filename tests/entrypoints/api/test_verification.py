"""Pairwise verification on the real stack: heavy crops confirmed, look-alikes rejected, in batches too."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image

from app.composition import build_container
from app.config.settings import PolicySettings, Settings, VerifySettings
from app.domain.models import CheckItem, UploadRef
from bench.extra_variants import t_phone, t_webpage
from testkit.images import PHOTOS, busy_page, cropped, jpeg, meme, photo, resized, screenshot, smooth_wallpaper
from testkit.variants import t_hflip, t_rotate
from tests.support import running_app, upload

# A wide verification band, as with the benchmark's calibrated thresholds.
# Verification is CPU work between the decode and the decision; the database only keeps its thumbnails and words,
# which tests/check/test_local_retrieval.py and the drains prove on MariaDB too.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

BAND = PolicySettings(duplicate_threshold=0.95, review_threshold=0.60)
# A photo whose screenshot (tests.support.screenshot) the whole-image embedding puts below the band.
SCREENSHOT_BASE = "b0420"


async def copy_checked_among(
    settings: Settings, original: str, others: Iterable[str], copy: Image.Image
) -> tuple[dict[str, Any], int]:
    """Register the other photos, then the original; check the copy without registering it. The copy's verdict and
    the original's image id."""
    async with running_app(settings) as (_, client):
        for other in others:
            await upload(client, jpeg(photo(other)))
        original_id = int((await upload(client, jpeg(photo(original)))).json()["image_id"])
        found: dict[str, Any] = (await upload(client, jpeg(copy), register=False)).json()
    return found, original_id


def decision(found: dict[str, Any]) -> tuple[object, object, object]:
    """What a verdict says: its label, what decided it, the image it matched."""
    return found["verdict"], found["decided_by"], found["matched_image_id"]


async def test_verification_confirms_heavy_crop_and_rejects_look_alike(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings(policy=BAND)) as (_, client):
        original = (await upload(client, jpeg(photo("b0587")))).json()
        crop = (await upload(client, jpeg(cropped(photo("b0587"), 0.72)), register=False)).json()
        assert 0.60 <= crop["similarity"] < 0.95  # the embedding alone cannot tell
        assert (crop["verdict"], crop["decided_by"], crop["matched_image_id"]) == (
            "duplicate",
            "verified",
            original["image_id"],
        )
        assert "verify" in crop["timings_ms"]

        left = (await upload(client, jpeg(photo("b0348")))).json()
        right = (await upload(client, jpeg(photo("b0349")))).json()  # the other half of one painting
        assert right["similarity"] >= 0.60 and right["verdict"] == "unique"
        stored = (await client.get(f"/images/{right['image_id']}")).json()
        assert stored["explanation"]["verification"][str(left["image_id"])]["outcome"] == "rejected"


async def test_verification_off_leaves_grey_band_to_review(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings(policy=BAND, verify=VerifySettings(enabled=False))) as (_, client):
        await upload(client, jpeg(photo("b0587")))
        crop = (await upload(client, jpeg(cropped(photo("b0587"), 0.72)), register=False)).json()
        assert (crop["verdict"], crop["decided_by"]) == ("review", "vector")


@pytest.mark.parametrize("refine", [True, False])
async def test_a_pair_the_halved_detection_leaves_in_doubt_is_verified_again_on_fine_features(
    make_settings: Callable[..., Settings], refine: bool
) -> None:
    """b0272 cut to 70 %: the halved detection's inliers crowd on too little of the picture (ambiguous), the fine
    features' spread over it. Without the second verification the pair stays in doubt: `review`."""
    settings = make_settings(policy=BAND, verify=VerifySettings(refine=refine))
    async with running_app(settings) as (_, client):
        original = (await upload(client, jpeg(photo("b0272")))).json()
        crop = (await upload(client, jpeg(cropped(photo("b0272"), 0.7)), register=False)).json()
        assert 0.60 <= crop["similarity"] < 0.95
        if refine:
            assert (crop["verdict"], crop["decided_by"], crop["matched_image_id"]) == (
                "duplicate",
                "verified",
                original["image_id"],
            )
        else:
            assert crop["verdict"] == "review" and crop["matched_image_id"] == original["image_id"]


async def test_verification_inside_one_batch_and_thumbnails_of_accepted_only(
    make_settings: Callable[..., Settings],
) -> None:
    async with build_container(make_settings(policy=BAND)) as container:
        outcomes = await container.service.check(
            [
                CheckItem(UploadRef(jpeg(photo("b0587")))),
                CheckItem(UploadRef(jpeg(cropped(photo("b0587"), 0.72)))),
            ]
        )
        first, crop = (o.verdict for o in outcomes)
        assert first is not None and crop is not None
        assert (crop.label.value, crop.decided_by.value, crop.matched_image_id) == (
            "duplicate",
            "verified",
            first.image_id,
        )
        async with container.database.engine.connect() as connection:
            kept = (await connection.execute(sa.text("SELECT image_id FROM thumbnail"))).scalars().all()
        assert kept == [first.image_id]


async def test_two_states_of_one_dialog_are_not_confirmed(make_settings: Callable[..., Settings]) -> None:
    # b0269 and b0271: two states of one GIMP dialog. Over a hundred inliers on the shared title, buttons and
    # list entries; aligned, about half of the overlap differs.
    async with running_app(make_settings(policy=BAND)) as (_, client):
        dialog = (await upload(client, jpeg(photo("b0269")))).json()
        other = (await upload(client, jpeg(resized(photo("b0271"), 0.8)))).json()
        assert (other["verdict"], other["matched_image_id"]) == ("review", dialog["image_id"])
        stored = (await client.get(f"/images/{other['image_id']}")).json()
        check = stored["explanation"]["verification"][str(dialog["image_id"])]
        assert check["outcome"] == "ambiguous"
        assert check["inliers"] >= 15 and check["base_coverage"] >= 0.20  # inliers alone would confirm it
        assert check["disagreement"] > 0.36


async def test_without_the_appearance_check_the_dialogs_pass(make_settings: Callable[..., Settings]) -> None:
    # The control for the test above: the same pair, with any disagreement allowed, is a "verified" duplicate.
    settings = make_settings(policy=BAND, verify=VerifySettings(max_disagreement=1.0))
    async with running_app(settings) as (_, client):
        dialog = (await upload(client, jpeg(photo("b0269")))).json()
        other = (await upload(client, jpeg(resized(photo("b0271"), 0.8)), register=False)).json()
        assert (other["verdict"], other["decided_by"], other["matched_image_id"]) == (
            "duplicate",
            "verified",
            dialog["image_id"],
        )


@pytest.mark.parametrize("second_look", [False, True], ids=["whole-image-only", "second-look"])
async def test_second_look_finds_the_photo_inside_a_screenshot(
    make_settings: Callable[..., Settings], second_look: bool
) -> None:
    # without retrieval by local features, which finds it too (the test below)
    settings = make_settings(policy=BAND, verify=VerifySettings(second_look=second_look, local_candidates=0))
    async with running_app(settings) as (_, client):
        original = (await upload(client, jpeg(photo(SCREENSHOT_BASE)))).json()
        shot = (await upload(client, jpeg(screenshot(photo(SCREENSHOT_BASE))), register=False)).json()
    if second_look:
        assert (shot["verdict"], shot["decided_by"], shot["matched_image_id"]) == (
            "duplicate",
            "verified",
            original["image_id"],
        )
        assert "second_look" in shot["timings_ms"]
    else:  # the whole screenshot's embedding does not find the photo: the control for the case above
        assert shot["verdict"] != "duplicate"


@pytest.mark.parametrize("sub_crops", [False, True], ids=["textured-region-only", "sub-crops"])
async def test_second_look_finds_the_photo_on_a_busy_page(
    make_settings: Callable[..., Settings], sub_crops: bool
) -> None:
    """Other pictures and text beside it: the largest textured region is the whole page, one of the fixed parts
    holds the photo."""
    settings = make_settings(policy=BAND, verify=VerifySettings(sub_crops=sub_crops, local_candidates=0))
    page = busy_page(photo(SCREENSHOT_BASE), [photo("b0575"), photo("b0385"), photo("b0441")])
    async with running_app(settings) as (_, client):
        original = (await upload(client, jpeg(photo(SCREENSHOT_BASE)))).json()
        found = (await upload(client, jpeg(page), register=False)).json()
    if sub_crops:
        assert (found["verdict"], found["decided_by"], found["matched_image_id"]) == (
            "duplicate",
            "verified",
            original["image_id"],
        )
    else:  # the control: without the fixed parts the photo is not found
        assert found["verdict"] != "duplicate"


@pytest.mark.parametrize("local_candidates", [0, 3], ids=["embedding-only", "local-features"])
async def test_local_features_find_the_photo_the_embeddings_miss(
    make_settings: Callable[..., Settings], local_candidates: int
) -> None:
    """The photo small on a busy page, second look off: its cosine stays below the band, yet the photo's SIFT
    keypoints are the page's, so the accepted image sharing most of its visual words is verified and confirmed.
    Other photos registered too, so that the retrieval has to pick the right one."""
    settings = make_settings(policy=BAND, verify=VerifySettings(second_look=False, local_candidates=local_candidates))
    page = busy_page(photo(SCREENSHOT_BASE), [photo("b0575"), photo("b0385"), photo("b0441")], share=0.15)
    found, original_id = await copy_checked_among(settings, SCREENSHOT_BASE, ("b0587", "b0348", "b0349"), page)
    assert found["similarity"] is None or found["similarity"] < 0.60  # the embedding alone: no candidate
    if local_candidates:
        assert decision(found) == ("duplicate", "verified", original_id)
        assert "local_search" in found["timings_ms"]
    else:  # the control
        assert found["verdict"] == "unique"


@pytest.mark.parametrize("second_look", [False, True], ids=["whole-image", "second-look"])
async def test_a_meme_of_a_smooth_wallpaper_is_found_between_its_caption_bands(
    make_settings: Callable[..., Settings], second_look: bool
) -> None:
    """A smooth wallpaper under white caption bands: the captions' letters are the only SIFT keypoints, so no
    verification can confirm it, and the bands pull the whole image's cosine into the grey band. The picture
    between the bands agrees with the wallpaper by its embedding and its pHash at once: a duplicate. Another
    smooth wallpaper, captioned the same way, stays apart. (Without the dense alignment of smooth pictures, which
    confirms the wallpaper between the bands first, in its own way: tested below.)"""
    settings = make_settings(policy=BAND, verify=VerifySettings(second_look=second_look, smooth=False))
    async with running_app(settings) as (_, client):
        originals = [(await upload(client, jpeg(smooth_wallpaper(seed)))).json() for seed in (1, 11)]
        await upload(client, jpeg(photo("b0587")))
        found = [(await upload(client, jpeg(meme(smooth_wallpaper(seed))), register=False)).json() for seed in (1, 11)]
        other = (await upload(client, jpeg(meme(smooth_wallpaper(3))), register=False)).json()
    for meme_of, original in zip(found, originals, strict=True):
        if second_look:
            assert (meme_of["verdict"], meme_of["decided_by"], meme_of["matched_image_id"]) == (
                "duplicate",
                "vector",
                original["image_id"],
            )
            assert meme_of["similarity"] >= 0.95 and meme_of["phash_distance"] <= 5  # the part's two signals
            assert "second_look" in meme_of["timings_ms"]
        else:  # the control: the whole image's cosine is below the duplicate threshold, and no keypoints to verify
            assert meme_of["verdict"] != "duplicate"
    assert other["verdict"] != "duplicate"


async def test_second_look_verifies_the_runner_up_part_when_the_closest_confirms_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    """A phone app's feed (bench/extra_variants.py, one fixed draw): its status and tab bars are bands, and the
    part between them comes closest to the photo by cosine yet holds the header and the caption too, so its
    verification confirms nothing; the fixed part that holds the photo does."""
    feed, _ = t_phone(photo("b0472"), random.Random("b0472:0"))
    found, original_id = await copy_checked_among(
        make_settings(policy=BAND), "b0472", ("b0587", "b0348", "b0420"), feed
    )
    assert decision(found) == ("duplicate", "verified", original_id)
    assert "second_look" in found["timings_ms"]


@pytest.mark.parametrize("part_words", [False, True], ids=["part-cosine-only", "part-words"])
async def test_a_fixed_part_finds_a_small_picture_by_its_own_visual_words(
    make_settings: Callable[..., Settings], part_words: bool
) -> None:
    """A web page (bench/extra_variants.py, the extra corpus's own draw for this photo) with the photo beside text
    and buttons: neither the whole page (by its cosine or its words) nor any part by its cosine finds the photo,
    yet a fixed part's own keypoints, detected at the part's resolution, share the photo's words, and its
    verification confirms it. Other photos registered too, so that the words have to pick the right one."""
    page, _ = t_webpage(photo("b0580"), random.Random("extra:b0580"))
    settings = make_settings(policy=BAND, verify=VerifySettings(part_words=part_words))
    found, original_id = await copy_checked_among(settings, "b0580", ("b0587", "b0348", "b0420", "b0472"), page)
    if part_words:
        assert decision(found) == ("duplicate", "verified", original_id)
    else:  # the control: the same pipeline without the parts' words does not find it
        assert found["verdict"] != "duplicate"


@pytest.mark.parametrize("parts", [1, 3], ids=["centre", "centre-and-corners"])
async def test_a_picture_high_on_a_page_is_found_by_the_parts_words_with_or_without_the_corners(
    make_settings: Callable[..., Settings], parts: int
) -> None:
    """A web page (the extra corpus's own draw for this photo) whose photo sits high on the page, among every test
    photo: found with the centre part's words alone (the default) and with the top corners searched in turn too
    (`part_words_parts` 3). On the extra corpus the corners found 2 of its 2,504 copies more
    (docs/benchmark-history.md)."""
    page, _ = t_webpage(photo("b0447"), random.Random("extra:b0447"))
    settings = make_settings(policy=BAND, verify=VerifySettings(part_words_parts=parts))
    others = sorted(p.stem for p in PHOTOS.glob("b*.jpg") if p.stem != "b0447")
    found, original_id = await copy_checked_among(settings, "b0447", others, page)
    assert decision(found) == ("duplicate", "verified", original_id)


@pytest.mark.parametrize("locate", [False, True], ids=["parts-only", "located"])
async def test_a_smooth_picture_on_a_page_is_found_where_its_candidate_sits(
    make_settings: Callable[..., Settings], locate: bool
) -> None:
    """Smooth wallpapers (no keypoints to verify) in a phone feed and on a web page (bench/extra_variants.py, fixed
    draws): no part the frame finders cut agrees with the wallpaper, but the closest candidate's own sketch finds
    where it sits, and the cut there agrees with it by the embedding and the pHash at once. A look-alike wallpaper
    that was never registered, framed the same way, stays apart. (Without the dense alignment of smooth pictures,
    which confirms the framed wallpapers first, in its own way: tested below.)"""
    settings = make_settings(policy=BAND, verify=VerifySettings(locate=locate, smooth=False))
    feed, _ = t_phone(smooth_wallpaper(1), random.Random("1:0"))
    page, _ = t_webpage(smooth_wallpaper(11), random.Random("11:0"))
    other, _ = t_phone(smooth_wallpaper(3), random.Random("3:0"))
    async with running_app(settings) as (_, client):
        await upload(client, jpeg(photo("b0587")))
        originals = [(await upload(client, jpeg(smooth_wallpaper(seed)))).json() for seed in (1, 11, 5)]
        found = [(await upload(client, jpeg(framed), register=False)).json() for framed in (feed, page)]
        look_alike = (await upload(client, jpeg(other), register=False)).json()
    for framed, original in zip(found, originals, strict=False):
        if locate:
            assert (framed["verdict"], framed["decided_by"], framed["matched_image_id"]) == (
                "duplicate",
                "vector",
                original["image_id"],
            )
            assert framed["similarity"] >= 0.95 and framed["phash_distance"] <= 5  # the cut's two signals
        else:  # the control: the same pipeline without locating the candidate
            assert framed["verdict"] != "duplicate"
    assert look_alike["verdict"] != "duplicate"


@pytest.mark.parametrize("smooth", [False, True], ids=["keypoints-only", "smooth"])
async def test_a_flipped_or_rotated_smooth_wallpaper_is_confirmed_by_its_details(
    make_settings: Callable[..., Settings], smooth: bool
) -> None:
    """Smooth wallpapers have next to no keypoints, so their copies' keypoints confirm nothing (on dev, 63 such
    copies were `unique` or `review`). Aligned by their intensities, the copy's details (bands, curves) agree with
    its original's; another wallpaper's do not, though every one of them shades from dark to light alike."""
    settings = make_settings(policy=BAND, verify=VerifySettings(smooth=smooth))
    rng = random.Random(5)
    copies = [t(smooth_wallpaper(seed), rng)[0] for seed in (1, 9) for t in (t_hflip, t_rotate)]
    async with running_app(settings) as (_, client):
        await upload(client, jpeg(photo("b0587")))
        originals = [(await upload(client, jpeg(smooth_wallpaper(seed)))).json() for seed in (1, 9)]
        found = [(await upload(client, jpeg(copy), register=False)).json() for copy in copies]
        other = (await upload(client, jpeg(smooth_wallpaper(3)), register=False)).json()
        kept = (await upload(client, jpeg(copies[0]))).json()  # registered: its explanation is stored
        evidence = (await client.get(f"/images/{kept['image_id']}")).json()["explanation"]["verification"]
    if smooth:  # what confirmed it, in the verdict's evidence: the details' correlation, no cells compared
        found_by = evidence[str(originals[0]["image_id"])]
        assert found_by["outcome"] == "confirmed" and found_by["correlation"] >= 0.9
        assert (found_by["inliers"], found_by["disagreement"], found_by["mirrored"]) == (0, None, True)
    for copy, original in zip(found, [o for o in originals for _ in range(2)], strict=True):
        if smooth:
            assert decision(copy) == ("duplicate", "verified", original["image_id"])
        else:  # the control: keypoints alone
            assert copy["verdict"] != "duplicate"
    assert other["verdict"] != "duplicate"
