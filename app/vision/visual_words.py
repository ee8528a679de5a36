"""Retrieval by local features (docs/design.md §1.7): root-SIFT descriptors quantised to visual words, and an
inverted index of the words of every accepted image, scored by idf-weighted cosine (bag of visual words).

The global embedding loses a picture that fills a fifth of a web page, or that was cropped, rotated and captioned
at once: on the extra corpus the true base of most such misses ranked far beyond the top 5 by cosine (0.3-0.6),
while its SIFT verification confirmed it. The picture's own keypoints survive the frame and the edits, so the
images sharing most of the query's words are the candidates worth verifying (never a verdict on their own).

The vocabulary (`visual_words.npz`) is fixed: k-means centroids and idf over the dev split's fold-0 bases
(`python -m bench.train_vocabulary`). Pure CPU work for the pool; the index changes only from the event loop,
and its search, which reads every row at a million, runs in a pool thread (see `WordIndex.search`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.domain.records import WordsDigest

VOCABULARY_FILE = Path(__file__).with_name("visual_words.npz")


class Vocabulary:
    def __init__(self, centroids: np.ndarray, idf: np.ndarray) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.idf = np.ascontiguousarray(idf, dtype=np.float32)
        # nearest centroid by L2 = largest d.c - |c|^2 / 2: one matrix product
        self._half_norms = 0.5 * np.einsum("ij,ij->i", self.centroids, self.centroids)

    @classmethod
    def shipped(cls) -> Vocabulary:
        with np.load(VOCABULARY_FILE) as data:
            return cls(data["centroids"], data["idf"])

    @property
    def size(self) -> int:
        return len(self.centroids)

    def digest(self) -> bytes:
        """What identifies these words: a snapshot of another vocabulary's words means nothing here."""
        return hashlib.sha256(self.centroids.tobytes() + self.idf.tobytes()).digest()

    def words(self, descriptors: np.ndarray) -> np.ndarray:
        """The distinct words of these descriptors, ascending (uint16)."""
        if len(descriptors) == 0:
            return np.zeros(0, np.uint16)
        scores = descriptors @ self.centroids.T
        scores -= self._half_norms  # in place: the same sums, without a second 600 x 4096 array
        nearest = scores.argmax(axis=1)
        return np.unique(nearest).astype(np.uint16)


def encode_words(words: np.ndarray) -> bytes:
    return np.ascontiguousarray(words, dtype="<u2").tobytes()


def decode_words(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u2").astype(np.uint16)


class WordIndex:
    """Image id -> its visual words, and the inverted lists word -> rows; removal marks a row dead."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self._vocabulary = vocabulary
        size = vocabulary.size
        self._postings: list[np.ndarray] = [np.zeros(4, np.int32) for _ in range(size)]
        self._counts = np.zeros(size, np.int64)
        self._row_of: dict[int, int] = {}
        self._ids: list[int] = []
        # per row, grown by doubling: a row's norm, and what a search scales its sum by (1 / norm, 0 once removed),
        # so that a search weighs every row at once in one pass and no list is converted per call
        self._norms = np.ones(64, np.float64)
        self._scale = np.zeros(64, np.float64)
        self.changed = False  # since it was loaded or saved: whether a snapshot would differ
        self.loaded_digest: WordsDigest | None = None  # what the snapshot it was loaded from (or saved as) holds

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._row_of

    def add(self, image_id: int, words: np.ndarray) -> None:
        self.remove(image_id)
        self.changed = True
        if len(words) == 0:
            return
        row = len(self._ids)
        if row == len(self._norms):
            self._norms = np.resize(self._norms, 2 * row)
            self._scale = np.resize(self._scale, 2 * row)
        self._ids.append(image_id)
        weights = self._vocabulary.idf[words]
        self._norms[row] = float(np.sqrt(np.dot(weights, weights))) or 1.0
        self._scale[row] = 1.0 / self._norms[row]
        self._row_of[image_id] = row
        for word in words.tolist():
            count = int(self._counts[word])
            postings = self._postings[word]
            if count == len(postings):
                postings = self._postings[word] = np.resize(postings, max(4, 2 * count))
            postings[count] = row
            self._counts[word] = count + 1

    def add_many(self, items: Sequence[tuple[int, np.ndarray]]) -> None:
        """Many images at once, as `add` one by one would leave the index, with the postings grown per word
        rather than per (image, word): what a start loading a large index does."""
        latest: dict[int, np.ndarray] = {}
        for image_id, words in reversed(items):  # an image given twice: its last words, in its last place
            latest.setdefault(image_id, words)
        for image_id in latest:
            self.remove(image_id)
        self.changed = self.changed or bool(latest)
        items = [(i, w) for i, w in reversed(list(latest.items())) if len(w)]
        if not items:
            return
        first = len(self._ids)
        needed = first + len(items)
        if needed > len(self._norms):
            capacity = max(needed, 2 * len(self._norms))
            self._norms = np.resize(self._norms, capacity)
            self._scale = np.resize(self._scale, capacity)
        words = np.concatenate([w for _, w in items]).astype(np.uint16, copy=False)
        lengths = np.fromiter((len(w) for _, w in items), np.int64, len(items))
        rows = np.repeat(np.arange(first, needed, dtype=np.int32), lengths)
        weights = self._vocabulary.idf[words]
        norms = np.sqrt(np.add.reduceat(weights * weights, np.concatenate(([0], np.cumsum(lengths)[:-1]))))
        self._norms[first:needed] = np.where(norms > 0, norms, 1.0)
        self._scale[first:needed] = 1.0 / self._norms[first:needed]
        for offset, (image_id, _) in enumerate(items):
            self._ids.append(image_id)
            self._row_of[image_id] = first + offset
        # rows ascending within each word, as `add` would append them: a stable sort of 16-bit keys is a radix
        # sort (linear), where the same sort of 64-bit keys took most of a million images' load
        rows = rows[np.argsort(words, kind="stable")]
        counts = np.bincount(words, minlength=self._vocabulary.size)
        ends = np.cumsum(counts)
        for word in np.flatnonzero(counts).tolist():
            count, start = int(counts[word]), int(ends[word] - counts[word])
            have = int(self._counts[word])
            postings = self._postings[word]
            if have + count > len(postings):
                grown = np.empty(max(have + count, 2 * len(postings)), np.int32)
                grown[:have] = postings[:have]
                postings = self._postings[word] = grown
            postings[have : have + count] = rows[start : start + count]
            self._counts[word] = have + count

    def remove(self, image_id: int) -> None:
        row = self._row_of.pop(image_id, None)
        if row is not None:
            self._scale[row] = 0.0
            self.changed = True

    def word_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """The images in the index and how many words each has (two arrays): what a start compares with the
        database's to trust a snapshot."""
        size = len(self._ids)
        rows = np.concatenate([p[:c] for p, c in zip(self._postings, self._counts.tolist(), strict=True)])
        per_row = np.bincount(rows, minlength=size) if len(rows) else np.zeros(size, np.int64)
        live = np.flatnonzero(self._scale[:size])
        return np.array(self._ids, np.int64)[live], per_row[live]

    def save(self, folder: Path) -> None:
        """The index as .npy files in `folder` (replaced whole, atomically): its live images only, renumbered."""
        size = len(self._ids)
        live = np.flatnonzero(self._scale[:size])
        renumbered = np.full(size, -1, np.int64)
        renumbered[live] = np.arange(len(live))
        lists = [renumbered[p[:c]] for p, c in zip(self._postings, self._counts.tolist(), strict=True)]
        lists = [rows[rows >= 0].astype(np.int32) for rows in lists]
        ids = np.array(self._ids, np.int64)[live]
        postings = np.concatenate(lists) if lists else np.zeros(0, np.int32)
        digest = WordsDigest.of(ids, 2 * np.bincount(postings, minlength=len(live)))  # two bytes a word
        arrays: dict[str, np.ndarray] = {
            "vocabulary": np.frombuffer(self._vocabulary.digest(), np.uint8),
            "digest": np.array([digest.images, digest.id_sum, digest.size_sum, digest.mixed], np.int64),
            "ids": ids,
            "norms": self._norms[live],
            "offsets": np.concatenate(([0], np.cumsum([len(rows) for rows in lists]))).astype(np.int64),
            "postings": postings,
        }
        fresh = folder.with_name(folder.name + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        for name, array in arrays.items():
            np.save(fresh / f"{name}.npy", array)
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        fresh.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        self.changed = False
        self.loaded_digest = digest

    def load(self, folder: Path) -> bool:
        """Become the index a `save` left, its postings mapped from the file (shared by every process on the
        machine, copied only for a word an image is then added to). False, and unchanged, if there is none or it
        is of another vocabulary."""
        vocabulary = self._vocabulary
        try:
            if bytes(np.load(folder / "vocabulary.npy")) != vocabulary.digest():
                return False
            ids = np.load(folder / "ids.npy")
            norms = np.load(folder / "norms.npy")
            offsets = np.load(folder / "offsets.npy")
            postings = np.load(folder / "postings.npy", mmap_mode="r")
        except (OSError, ValueError):
            return False
        if len(offsets) != vocabulary.size + 1 or len(norms) != len(ids) or offsets[-1] != len(postings):
            return False
        size, capacity = len(ids), max(64, len(ids))
        self._ids = ids.tolist()
        self._row_of = dict(zip(self._ids, range(size), strict=True))
        self._norms = np.concatenate([norms, np.ones(capacity - size)])
        self._scale = np.concatenate([1.0 / self._norms[:size], np.zeros(capacity - size)])
        self._postings = [postings[offsets[w] : offsets[w + 1]] for w in range(vocabulary.size)]
        self._counts = np.diff(offsets).astype(np.int64)
        try:
            held = np.load(folder / "digest.npy")
            self.loaded_digest = WordsDigest(*(int(v) for v in held))
        except (OSError, ValueError, TypeError):
            self.loaded_digest = None
        self.changed = self.loaded_digest is None  # a snapshot written before digests were: written again at stop
        return True

    def search(self, words: np.ndarray, limit: int, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        """The `limit` images sharing the most of these words (idf-weighted cosine), best first.

        Safe from a pool thread while the event loop adds and removes: the counts are read before the size, so
        every row read is below it, and a list or array grown meanwhile is a new one (the old stays as it was)."""
        words = words[self._counts[words] > 0] if len(words) else words
        if len(words) == 0 or limit <= 0:
            return []
        counts = self._counts[words]
        size = len(self._ids)
        weights = self._vocabulary.idf[words]
        query_norm = float(np.sqrt(np.dot(weights, weights))) or 1.0
        # rows as intp: bincount converts any other type first, and that took half its time at a million
        rows = np.concatenate([self._postings[w][:c] for w, c in zip(words.tolist(), counts.tolist(), strict=True)])
        votes = np.repeat(weights * weights, counts)
        scores = np.bincount(rows.astype(np.intp), weights=votes, minlength=size)[:size].astype(np.float64, copy=False)
        scores *= self._scale[:size]  # each row's norm, and 0 for a removed one
        found: list[tuple[int, float]] = []
        for row in _best_rows(scores, limit + (len(exclude) if exclude else 0)).tolist():
            if len(found) == limit:
                break
            image_id = self._ids[row]
            if not exclude or image_id not in exclude:
                found.append((image_id, round(float(scores[row]) / query_norm, 4)))
        return found


BLOCK = 256


def _best_rows(scores: np.ndarray, wanted: int) -> np.ndarray:
    """The rows of the `wanted` highest positive scores (and any tied with the last), highest first, ties by row:
    what a stable sort of every row would put first. The `wanted`-th highest of the blocks' maxima is a score
    that many rows reach, so no row below it can be among the best: one pass over the scores finds the few to sort,
    where a partition of all of them took as long as the scoring at a million."""
    whole = len(scores) // BLOCK * BLOCK
    maxima = scores[:whole].reshape(-1, BLOCK).max(axis=1)
    if whole < len(scores):
        maxima = np.append(maxima, scores[whole:].max())
    floor = np.partition(maxima, len(maxima) - wanted)[len(maxima) - wanted] if wanted < len(maxima) else 0.0
    rows = np.flatnonzero(scores >= floor) if floor > 0.0 else np.flatnonzero(scores > 0.0)
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    if len(rows) > wanted:  # the last wanted score, and any tied with it
        rows = rows[: wanted + int(np.count_nonzero(scores[rows[wanted:]] == scores[rows[wanted - 1]]))]
    return rows
