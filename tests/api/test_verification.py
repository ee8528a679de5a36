"""Pairwise verification on the real stack: heavy crops confirmed, look-alikes rejected, in batches too."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from app.composition import build_container
from app.domain.models import CheckItem, UploadRef
from app.settings import PolicySettings, Settings, VerifySettings
from tests.support import bench_image, cropped, jpeg, running_app, upload

# A wide verification band, as with the benchmark's calibrated thresholds.
BAND = PolicySettings(duplicate_threshold=0.95, review_threshold=0.60)


async def test_verification_confirms_heavy_crop_and_rejects_look_alike(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings(policy=BAND)) as (_, client):
        original = (await upload(client, jpeg(bench_image("b0011")))).json()
        crop = (await upload(client, jpeg(cropped(bench_image("b0011"), 0.72)), register=False)).json()
        assert 0.60 <= crop["similarity"] < 0.95  # the embedding alone cannot tell
        assert (crop["verdict"], crop["decided_by"], crop["matched_image_id"]) == (
            "duplicate",
            "verified",
            original["image_id"],
        )
        assert "verify" in crop["timings_ms"]

        left = (await upload(client, jpeg(bench_image("b0348")))).json()
        right = (await upload(client, jpeg(bench_image("b0349")))).json()  # the other half of one painting
        assert right["similarity"] >= 0.60 and right["verdict"] == "unique"
        stored = (await client.get(f"/images/{right['image_id']}")).json()
        assert stored["explanation"]["verification"][str(left["image_id"])]["outcome"] == "rejected"


async def test_verification_off_leaves_grey_band_to_review(make_settings: Callable[..., Settings]) -> None:
    async with running_app(make_settings(policy=BAND, verify=VerifySettings(enabled=False))) as (_, client):
        await upload(client, jpeg(bench_image("b0011")))
        crop = (await upload(client, jpeg(cropped(bench_image("b0011"), 0.72)), register=False)).json()
        assert (crop["verdict"], crop["decided_by"]) == ("review", "vector")


async def test_verification_inside_one_batch_and_thumbnails_of_accepted_only(
    make_settings: Callable[..., Settings],
) -> None:
    async with build_container(make_settings(policy=BAND)) as container:
        outcomes = await container.service.check(
            [
                CheckItem(UploadRef(jpeg(bench_image("b0011")))),
                CheckItem(UploadRef(jpeg(cropped(bench_image("b0011"), 0.72)))),
            ]
        )
        first, crop = (o.verdict for o in outcomes)
        assert first is not None and crop is not None
        assert (crop.label.value, crop.decided_by.value, crop.matched_image_id) == (
            "duplicate",
            "verified",
            first.image_id,
        )
        async with container.engine.connect() as connection:
            kept = (await connection.execute(sa.text("SELECT image_id FROM thumbnail"))).scalars().all()
        assert kept == [first.image_id]
