"""CheckService orchestration with a small embedder double (real SQLite/MariaDB, real FAISS)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from app.composition import build_container
from app.config.settings import Settings, VerifySettings
from app.domain.errors import ConfigurationError
from app.domain.models import CheckItem, StoredImageRef, UploadRef
from testkit.doubles import FlakyEmbedder, TinyEmbedder
from testkit.images import jpeg, photo, resized


def item(data: bytes, register: bool = True) -> CheckItem:
    return CheckItem(UploadRef(data), register=register)


async def test_service_concurrent_twins_reaching_decide_together_are_not_both_unique(
    make_settings: Callable[..., Settings],
) -> None:
    # Both checks are held at the embedder until both arrive, so they reach search+decide at the same moment:
    # only the service's decide lock keeps them from both seeing an empty index.
    embedder = TinyEmbedder(barrier=asyncio.Barrier(2))
    async with build_container(make_settings(), embedder=embedder) as container:
        a = jpeg(photo("b0575"))
        b = jpeg(resized(photo("b0575"), 0.8), quality=50)
        first, second = await asyncio.gather(container.service.check([item(a)]), container.service.check([item(b)]))
        labels = sorted([first[0].verdict.label.value, second[0].verdict.label.value])  # type: ignore[union-attr]
        assert labels == ["duplicate", "unique"]
        assert embedder.calls == 2
        assert await container.index.count() == 1


async def test_service_in_batch_twins_decided_in_order(make_settings: Callable[..., Settings]) -> None:
    embedder = TinyEmbedder()
    # without the second look's fixed parts, which would embed more for the unique photo (counted below)
    async with build_container(make_settings(verify=VerifySettings(sub_crops=False)), embedder=embedder) as container:
        original = jpeg(photo("b0575"))
        outcomes = await container.service.check(
            [
                item(original),
                item(jpeg(resized(photo("b0575"), 0.5), quality=40)),
                item(jpeg(photo("b0587"))),
                item(original),  # an exact twin inside the batch
            ]
        )
        verdicts = [o.verdict for o in outcomes]
        assert all(v is not None for v in verdicts)
        first, copy, other, twin = verdicts  # type: ignore[misc]
        assert (first.label.value, other.label.value) == ("unique", "unique")
        assert (copy.label.value, copy.matched_image_id) == ("duplicate", first.image_id)
        assert (twin.label.value, twin.decided_by.value, twin.matched_image_id) == (
            "duplicate",
            "exact",
            first.image_id,
        )
        assert first.image_id < copy.image_id < other.image_id < twin.image_id
        assert embedder.images == 3  # one embedding batch; the in-batch exact twin needed none
        assert embedder.calls == 1


async def test_service_reconcile_repairs_index_after_crash(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    async with build_container(settings, embedder=TinyEmbedder()) as container:
        outcomes = await container.service.check([item(jpeg(photo(b))) for b in ("b0575", "b0587", "b0420")])
        ids = [o.verdict.image_id for o in outcomes]  # type: ignore[union-attr]
        # A crash after the database write but before the index write: the vector is missing.
        await container.index.delete([ids[1]])
        # And a vector whose row was never accepted (a crash in the other direction, or a stale snapshot).
        dimension = container.embedder.dimension
        await container.index.upsert([999_999], np.full((1, dimension), dimension**-0.5, np.float32))
        await container.index.flush()
        assert await container.index.ids() == {ids[0], ids[2], 999_999}
    async with build_container(settings, embedder=TinyEmbedder()) as container:
        assert await container.index.ids() == set(ids)


async def test_service_recheck_without_bytes_uses_stored_features(make_settings: Callable[..., Settings]) -> None:
    embedder = TinyEmbedder()
    async with build_container(make_settings(), embedder=embedder) as container:
        first = (await container.service.check([item(jpeg(photo("b0575")))]))[0].verdict
        assert first is not None and first.image_id is not None
        again = (await container.service.check([CheckItem(StoredImageRef(first.image_id))]))[0]
        assert again.error is None
        assert again.verdict is not None and again.verdict.label.value == "unique"
        assert embedder.images == 1  # the stored embedding served the re-check


async def test_service_refuses_to_start_on_another_models_index(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    async with build_container(settings, embedder=TinyEmbedder()) as container:
        await container.service.check([item(jpeg(photo("b0575")))])

    class OtherModel(TinyEmbedder):
        model_name = "another-model"

    with pytest.raises(ConfigurationError, match="re-index"):
        async with build_container(settings, embedder=OtherModel()):
            pass


async def test_service_partial_embedding_failure_fails_only_those_images(
    make_settings: Callable[..., Settings],
) -> None:
    from PIL import Image

    embedder = FlakyEmbedder(dark_below=20)
    async with build_container(make_settings(), embedder=embedder) as container:
        dark = Image.new("RGB", (200, 150), (5, 5, 5))
        outcomes = await container.service.check(
            [item(jpeg(photo("b0575"))), item(jpeg(dark)), item(jpeg(photo("b0587")))]
        )
        assert [o.error.code if o.error else o.verdict.label.value for o in outcomes] == [  # type: ignore[union-attr]
            "unique",
            "backend_unavailable",
            "unique",
        ]
        assert await container.index.count() == 2
