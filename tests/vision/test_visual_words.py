"""Visual words: the shipped vocabulary, the word index's ranking and bookkeeping, and retrieval on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.domain.records import WordsDigest
from app.vision.local_features import features, grey
from app.vision.visual_words import Vocabulary, WordIndex, decode_words, encode_words
from testkit.images import busy_page, cropped, photo, screenshot


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary.shipped()


def test_the_shipped_vocabulary(vocabulary: Vocabulary) -> None:
    assert vocabulary.centroids.shape == (4096, 128)
    assert np.isfinite(vocabulary.centroids).all() and np.isfinite(vocabulary.idf).all()
    assert (vocabulary.idf >= 0).all() and vocabulary.idf.max() > vocabulary.idf.min()


def test_words_are_the_nearest_centroids(vocabulary: Vocabulary) -> None:
    descriptors = features(grey(photo("b0587"))).descriptors
    distances = ((descriptors[:, None, :] - vocabulary.centroids[None, :, :]) ** 2).sum(axis=2)
    assert np.array_equal(vocabulary.words(descriptors), np.unique(distances.argmin(axis=1)).astype(np.uint16))
    assert len(vocabulary.words(np.zeros((0, 128), np.float32))) == 0


def test_words_survive_storage() -> None:
    words = np.array([0, 7, 300, 4095], np.uint16)
    assert np.array_equal(decode_words(encode_words(words)), words)


def _tiny_index() -> WordIndex:
    centroids = np.eye(8, 128, dtype=np.float32)
    return WordIndex(Vocabulary(centroids, np.array([1, 1, 1, 1, 1, 1, 1, 3], np.float32)))


def test_the_index_ranks_by_shared_words_weighted_by_idf() -> None:
    index = _tiny_index()
    index.add(1, np.array([0, 1, 2, 3], np.uint16))
    index.add(2, np.array([0, 1, 7], np.uint16))  # word 7 is rare: it counts three times as much
    index.add(3, np.array([4, 5], np.uint16))
    found = index.search(np.array([0, 1, 7], np.uint16), limit=5)
    assert [i for i, _ in found] == [2, 1]  # 3 shares nothing: not listed
    assert found[0][1] == pytest.approx(1.0)
    assert index.search(np.array([0, 1, 7], np.uint16), limit=1) == found[:1]
    assert [i for i, _ in index.search(np.array([0, 1, 7], np.uint16), 5, exclude={2})] == [1]


def test_the_index_forgets_and_replaces() -> None:
    index = _tiny_index()
    index.add(1, np.array([0, 1], np.uint16))
    index.add(2, np.array([0, 1], np.uint16))
    index.remove(1)
    assert 1 not in index and len(index) == 1
    assert [i for i, _ in index.search(np.array([0, 1], np.uint16), 5)] == [2]
    index.add(2, np.array([5, 6], np.uint16))  # accepted again with other words
    assert index.search(np.array([0, 1], np.uint16), 5) == []
    assert [i for i, _ in index.search(np.array([5], np.uint16), 5)] == [2]
    assert index.search(np.zeros(0, np.uint16), 5) == []
    index.add(3, np.zeros(0, np.uint16))  # an image without keypoints is not indexed
    assert 3 not in index


def test_a_large_index_ranks_as_a_full_sort_would() -> None:
    """A few thousand images, hundreds tied (the same words), some removed, some excluded: the best few are the
    head of the ranking of every row (a stable sort of all of them), though only the best rows are sorted."""
    rng = np.random.default_rng(7)
    size = 64
    idf = rng.uniform(0.5, 3.0, size).astype(np.float32)
    index = WordIndex(Vocabulary(np.eye(size, 128, dtype=np.float32), idf))
    kept: dict[int, set[int]] = {}
    for image_id in range(1, 3001):
        words = np.unique(rng.integers(0, size, 3 if image_id % 3 else 6)).astype(np.uint16)
        if image_id % 10 == 0:
            words = np.array([1, 2, 3], np.uint16)  # 300 images tied exactly
        index.add(image_id, words)
        kept[image_id] = set(words.tolist())
    for image_id in range(5, 3001, 97):
        index.remove(image_id)
        del kept[image_id]
    for query, limit, exclude in [
        (np.array([1, 2, 3], np.uint16), 5, set()),
        (np.array([1, 2, 3], np.uint16), 3, {10, 20, 30, 40}),
        (np.unique(rng.integers(0, size, 8)).astype(np.uint16), 10, {1, 2, 3}),
    ]:
        everything = index.search(query, 10**6, exclude)  # more than there are rows: every row sorted
        assert {i for i, _ in everything} == {i for i, w in kept.items() if w & set(query.tolist())} - exclude
        assert [s for _, s in everything] == sorted((s for _, s in everything), reverse=True)
        assert index.search(query, limit, exclude) == everything[:limit]
    for limit in range(1, 14):  # fewer and more than the index's blocks of rows
        query = np.unique(rng.integers(0, size, 5)).astype(np.uint16)
        assert index.search(query, limit) == index.search(query, 10**6)[:limit]
    tied = [i for i, _ in index.search(np.array([1, 2, 3], np.uint16), 5)]
    assert tied == sorted(tied) and all(i % 10 == 0 for i in tied)  # equal scores: the earlier added first


def test_the_page_around_a_photo_finds_the_photo(vocabulary: Vocabulary) -> None:
    """Real photos: the picture's keypoints survive the frame, so its words pick it among look-alikes."""
    bases = ["b0420", "b0587", "b0348", "b0349", "b0441"]
    index = WordIndex(vocabulary)
    for n, base in enumerate(bases):
        index.add(n, vocabulary.words(features(grey(photo(base))).descriptors))
    queries = {
        "busy page": busy_page(photo("b0420"), [photo("b0575"), photo("b0385")], share=0.15),
        "screenshot": screenshot(photo("b0420")),
        "crop": cropped(photo("b0420"), 0.6),
    }
    for name, query in queries.items():
        found = index.search(vocabulary.words(features(grey(query)).descriptors), limit=3)
        assert found[0][0] == 0, name


def test_adding_many_at_once_leaves_the_index_as_adding_one_by_one() -> None:
    """The start's bulk load: the same postings, norms and rankings as `add` per image, replacements and empty
    word sets included, added in several chunks onto an index that already holds images."""
    rng = np.random.default_rng(11)
    size = 64
    vocabulary = Vocabulary(np.eye(size, 128, dtype=np.float32), rng.uniform(0.5, 3.0, size).astype(np.float32))
    one_by_one, at_once = WordIndex(vocabulary), WordIndex(vocabulary)
    items = [(i, np.unique(rng.integers(0, size, int(rng.integers(0, 9)))).astype(np.uint16)) for i in range(1, 700)]
    items += [(5, np.array([1, 2], np.uint16)), (9, np.zeros(0, np.uint16))]  # replaced; emptied
    one_by_one.add(1000, np.array([1, 2, 3], np.uint16))
    at_once.add(1000, np.array([1, 2, 3], np.uint16))
    for image_id, words in items:
        one_by_one.add(image_id, words)
    for start in range(0, len(items), 100):
        at_once.add_many(items[start : start + 100])
    twice = [(2000, np.array([4], np.uint16)), (2001, np.array([4], np.uint16)), (2000, np.array([4, 5], np.uint16))]
    for image_id, words in twice:  # one image twice in one call
        one_by_one.add(image_id, words)
    at_once.add_many(twice)
    assert len(at_once) == len(one_by_one) and 9 not in at_once
    mixed = np.unique(rng.integers(0, size, 6)).astype(np.uint16)
    for query in [np.array([4], np.uint16), np.array([1, 2], np.uint16), mixed]:
        assert at_once.search(query, 50) == one_by_one.search(query, 50)


def test_a_saved_index_loads_as_it_was_and_keeps_changing(tmp_path: Path) -> None:
    """The snapshot a stop leaves: the same images, rankings and word counts once mapped back, a removed image
    left out; adding and removing after the load works on the mapped postings; another vocabulary's snapshot, or
    a damaged one, is refused and leaves the index as it was."""
    rng = np.random.default_rng(12)
    size = 64
    vocabulary = Vocabulary(np.eye(size, 128, dtype=np.float32), rng.uniform(0.5, 3.0, size).astype(np.float32))
    original = WordIndex(vocabulary)
    original.add_many(
        [(i, np.unique(rng.integers(0, size, int(rng.integers(1, 9)))).astype(np.uint16)) for i in range(1, 300)]
    )
    original.remove(17)
    folder = tmp_path / "words"
    original.save(folder)
    assert not original.changed
    loaded = WordIndex(vocabulary)
    assert loaded.load(folder) and not loaded.changed
    assert len(loaded) == len(original) == 298 and 17 not in loaded
    queries = [np.unique(rng.integers(0, size, 6)).astype(np.uint16) for _ in range(20)]
    assert [loaded.search(q, 30) for q in queries] == [original.search(q, 30) for q in queries]
    held, counts = loaded.word_counts()
    assert dict(zip(held.tolist(), counts.tolist(), strict=True)) == dict(
        zip(*(a.tolist() for a in original.word_counts()), strict=True)
    )

    for index in (original, loaded):
        index.add(400, np.array([0, 1, 2], np.uint16))
        index.add(5, np.array([3], np.uint16))
        index.remove(6)
    assert loaded.changed
    assert [loaded.search(q, 30) for q in queries] == [original.search(q, 30) for q in queries]
    loaded.save(folder)  # over the snapshot it was mapped from
    again = WordIndex(vocabulary)
    assert again.load(folder) and [again.search(q, 30) for q in queries] == [original.search(q, 30) for q in queries]

    # the snapshot says what it holds, as the database would add it up: ids, and two bytes a word
    assert again.loaded_digest == WordsDigest.of(*(lambda ids, counts: (ids, 2 * counts))(*original.word_counts()))
    (folder / "digest.npy").unlink()  # as written before snapshots carried one: trusted, and written again
    older = WordIndex(vocabulary)
    assert older.load(folder) and older.loaded_digest is None and older.changed

    other = WordIndex(Vocabulary(np.eye(size, 128, dtype=np.float32), np.ones(size, np.float32)))
    assert not other.load(folder) and len(other) == 0
    (folder / "offsets.npy").write_bytes(b"damaged")
    assert not WordIndex(vocabulary).load(folder)
    assert not WordIndex(vocabulary).load(tmp_path / "nothing here")
