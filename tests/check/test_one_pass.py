"""One check, one pass: each stage runs once per image, and the expensive ones (embedding, verification) never
run under the decide lock, which covers only a search again if the index changed, the decision and the record.
Counted on the real service (real model, FAISS, SQLite) by spying on its own ports' calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from app.check.verification import View
from app.composition import Container, build_container
from app.config.settings import PolicySettings, Settings
from app.domain.models import CheckItem, UploadRef
from app.vision.decode import DecodedImage
from testkit.images import cropped, jpeg, photo

BAND = PolicySettings(duplicate_threshold=0.95, review_threshold=0.60)


class Spy:
    """Records each embedding, search and verification call, and whether the decide lock was held."""

    def __init__(self, container: Container) -> None:
        self.embedded: list[tuple[str, tuple[int, int], bool]] = []
        self.searches: list[bool] = []
        self.verified: list[tuple[int, int, str, bool]] = []
        self.whole_calls: list[list[int]] = []  # each call's candidates not verified before, whole images only
        service = container.service
        embed, search = container.embedder.embed, container.index.search
        verifier = service.verifier
        assert verifier is not None
        verify_pairs = verifier.verify_pairs

        async def spy_embed(images: Sequence[DecodedImage]) -> np.ndarray:
            self.embedded += [(i.sha256, i.pixels.size, service.deciding) for i in images]
            return await embed(images)

        async def spy_search(vectors: np.ndarray, k: int, exclude: Sequence[int | None]) -> Any:
            self.searches.append(service.deciding)
            return await search(vectors, k, exclude)

        async def spy_verify(pairs: Sequence[Any], view: View = View.WHOLE, peers: Any = None) -> None:
            fresh = [(w, c) for w, c in pairs if view is View.FRAMED or c not in w.verified]
            self.verified += [(w.position, c, view.value, service.deciding) for w, c in fresh]
            if view is View.WHOLE:
                self.whole_calls.append([c for _, c in fresh])
            await verify_pairs(pairs, view, peers)

        container.embedder.embed = spy_embed  # type: ignore[method-assign]
        container.index.search = spy_search  # type: ignore[method-assign]
        verifier.verify_pairs = spy_verify  # type: ignore[method-assign]

    def assert_nothing_expensive_under_the_lock(self) -> None:
        assert not any(locked for *_, locked in self.embedded), self.embedded
        assert not any(locked for *_, locked in self.verified), self.verified

    def assert_each_image_embedded_once(self) -> None:
        # the whole image and, on a second look, its framed part (another size): each once
        counts = Counter((sha, size) for sha, size, _ in self.embedded)
        assert max(counts.values(), default=0) == 1, counts

    def assert_each_pair_verified_once(self) -> None:
        counts = Counter((position, candidate, view) for position, candidate, view, _ in self.verified)
        assert max(counts.values(), default=0) == 1, counts


def upload(data: bytes, register: bool = True) -> CheckItem:
    return CheckItem(UploadRef(data), register=register)


async def test_check_runs_each_stage_once_and_nothing_expensive_under_the_lock(
    make_settings: Callable[..., Settings],
) -> None:
    async with build_container(make_settings(policy=BAND)) as container:
        base = (await container.service.check([upload(jpeg(photo("b0587")))]))[0].verdict
        assert base is not None
        spy = Spy(container)
        original = jpeg(photo("b0575"))
        outcomes = await container.service.check(
            [
                upload(original),
                upload(jpeg(cropped(photo("b0575"), 0.72))),  # a grey-band twin of an image of the same batch
                upload(jpeg(cropped(photo("b0587"), 0.72))),  # a grey-band copy of the indexed image
                upload(jpeg(photo("b0420"))),
                upload(original),  # identical bytes: embedded once for both
            ]
        )
        verdicts = [o.verdict for o in outcomes]
        assert all(v is not None for v in verdicts), [o.error for o in outcomes]
        first, twin, copy, other, same = verdicts  # type: ignore[misc]
        assert (first.label.value, other.label.value) == ("unique", "unique")
        assert (twin.label.value, twin.decided_by.value, twin.matched_image_id) == (
            "duplicate",
            "verified",
            first.image_id,
        )
        assert (copy.label.value, copy.decided_by.value, copy.matched_image_id) == (
            "duplicate",
            "verified",
            base.image_id,
        )
        assert (same.label.value, same.decided_by.value, same.matched_image_id) == (
            "duplicate",
            "exact",
            first.image_id,
        )
        spy.assert_nothing_expensive_under_the_lock()
        spy.assert_each_image_embedded_once()
        spy.assert_each_pair_verified_once()
        assert len({sha for sha, _, _ in spy.embedded}) == 4  # the identical bytes shared one embedding
        assert spy.searches == [False]  # one search for the batch, before the lock: nothing changed meanwhile
        # the in-batch twin could only be verified once its original was decided: outside the lock, once (before,
        # its visual words proposed the one indexed image, which verification rejected)
        assert [(p, c) for p, c, _, _ in spy.verified if p == 1 and c == first.image_id] == [(1, first.image_id)]
        assert {c for p, c, _, _ in spy.verified if p == 1} <= {first.image_id, base.image_id}


async def test_a_candidate_recorded_meanwhile_is_searched_under_the_lock_and_verified_outside_it(
    make_settings: Callable[..., Settings],
) -> None:
    async with build_container(make_settings(policy=BAND)) as container:
        spy = Spy(container)
        service = container.service
        late: list[Any] = []

        async def let_another_check_record_first() -> None:
            # between this batch's search and its decision another check records the original
            late.extend(await service.check([upload(jpeg(photo("b0587")))]))

        outcome = (
            await service.check(
                [upload(jpeg(cropped(photo("b0587"), 0.72)))], before_decide=let_another_check_record_first
            )
        )[0]
        original = late[0].verdict
        assert original is not None and original.label.value == "unique"
        assert outcome.verdict is not None
        assert (outcome.verdict.label.value, outcome.verdict.decided_by.value, outcome.verdict.matched_image_id) == (
            "duplicate",
            "verified",
            original.image_id,
        )
        spy.assert_nothing_expensive_under_the_lock()
        spy.assert_each_pair_verified_once()
        # searched before the lock (the crop, then the original's own check), and again under it: the index changed
        assert spy.searches.count(True) == 1


async def test_verification_stops_at_a_confirmed_closest_candidate_and_takes_the_rest_at_once(
    make_settings: Callable[..., Settings],
) -> None:
    """The closest candidate is verified first; a copy it confirms stops there, and an image still in doubt has
    the rest of its candidates verified in one go, not one after another (issue #33: the slowest checks)."""
    wide = PolicySettings(duplicate_threshold=0.95, review_threshold=0.05)  # every neighbour in the grey band
    async with build_container(make_settings(policy=wide)) as container:
        service = container.service
        indexed = []
        for name in ("b0587", "b0420", "b0433"):
            verdict = (await service.check([upload(jpeg(photo(name)))]))[0].verdict
            assert verdict is not None and verdict.image_id is not None
            indexed.append(verdict.image_id)
        spy = Spy(container)
        copy = (await service.check([upload(jpeg(cropped(photo("b0587"), 0.72)), register=False)]))[0].verdict
        assert copy is not None
        assert (copy.label.value, copy.decided_by.value, copy.matched_image_id) == ("duplicate", "verified", indexed[0])
        assert spy.whole_calls == [[indexed[0]]]  # the others were never looked at

        spy.whole_calls.clear()
        other = (await service.check([upload(jpeg(photo("b0348")), register=False)]))[0].verdict
        assert other is not None and other.label.value == "unique", other
        closest, rest = spy.whole_calls[0], spy.whole_calls[1]
        assert len(closest) == 1 and sorted(closest + rest) == sorted(indexed)
