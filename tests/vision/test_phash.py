from __future__ import annotations

import numpy as np

from app.vision.phash import PhashIndex, hamming


def test_phash_index_nearest_excludes_self_and_orders_by_distance() -> None:
    index = PhashIndex()
    index.add_many([(1, 0b0000), (2, 0b0111), (3, 0b0001), (4, 0xFFFF_FFFF_FFFF_FFFF)])
    assert index.nearest(0b0000, limit=3) == [(1, 0), (3, 1), (2, 3)]
    assert index.nearest(0b0000, exclude=1, limit=2) == [(3, 1), (2, 3)]
    assert index.nearest(0, limit=10)[-1] == (4, 64)
    assert index.nearest(0, exclude=4, limit=10) == [(1, 0), (3, 1), (2, 3)]
    alone = PhashIndex()
    alone.add(9, 0)
    assert alone.nearest(0, exclude=9) == [] and alone.nearest(0, limit=0) == []


def test_phash_index_nearest_is_a_stable_sort_of_every_distance() -> None:
    """The closest `limit`, ties in the order the images were added, on an index large enough for many ties."""
    rng = np.random.default_rng(1)
    hashes = [int(h) for h in rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64, endpoint=True)]
    index = PhashIndex()
    index.add_many(enumerate(hashes))
    for query in hashes[:20]:
        every = sorted(range(len(hashes)), key=lambda i: hamming(hashes[i], query))
        assert index.nearest(query, exclude=every[0], limit=7) == [(i, hamming(hashes[i], query)) for i in every[1:8]]


def test_phash_index_remove_and_replace() -> None:
    index = PhashIndex()
    for i in range(3000):  # beyond the initial capacity
        index.add(i, i)
    index.remove(0)
    index.remove(1500)
    index.add(7, 123456)  # re-adding an id replaces its hash
    assert len(index) == 2998
    assert index.nearest(123456, limit=1) == [(7, 0)]
    assert all(image_id not in (0, 1500) for image_id, _ in index.nearest(0, limit=50))


def test_phash_index_matches_bitcount_on_random_hashes() -> None:
    rng = np.random.default_rng(0)
    hashes = [int(h) for h in rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)]
    index = PhashIndex()
    index.add_many(list(enumerate(hashes)) + [(3, hashes[3] ^ 1)])  # an image given again: its last hash
    assert index.distance(3, hashes[3]) == 1 and len(index) == 500
    query = hashes[17] ^ 0b1011
    best = index.nearest(query, limit=1)[0]
    assert best == (17, 3)
    assert hamming(hashes[17], query) == 3


def test_phash_index_distance_to_one_image() -> None:
    index = PhashIndex()
    index.add_many([(1, 0b1011), (2, 0)])
    assert index.distance(1, 0b0001) == 2 and index.distance(2, 0b0001) == 1
    index.remove(1)
    assert index.distance(1, 0) is None and index.distance(2, 0) == 0
