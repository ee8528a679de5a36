"""Fit thresholds from labelled pairs (docs/design.md §4): pure functions, no IO.

A pair is (similarity of a query to a candidate, whether the candidate really is its original). The duplicate
threshold is the lowest similarity above which the pairs are duplicates with the target precision; the review
threshold the highest below which no more than (1 - target recall) of the true duplicates lie. Bootstrap
resampling gives their confidence intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fitted:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Calibration:
    duplicate: Fitted
    review: Fitted
    pairs: int
    positives: int
    precision_target: float
    recall_target: float


def duplicate_threshold(similarity: np.ndarray, is_duplicate: np.ndarray, precision: float) -> float:
    """The lowest threshold t with precision(s >= t) >= target over the longest such prefix of the ranking."""
    order = np.argsort(-similarity, kind="stable")
    hits = np.cumsum(is_duplicate[order])
    ok = np.nonzero(hits / np.arange(1, len(order) + 1) >= precision)[0]
    return float(similarity[order][ok[-1]]) if len(ok) else float(similarity.max(initial=1.0))


def review_threshold(similarity: np.ndarray, is_duplicate: np.ndarray, recall: float) -> float:
    """The highest threshold t that keeps recall(s >= t) >= target among true duplicates."""
    positives = np.sort(similarity[is_duplicate])[::-1]
    if len(positives) == 0:
        return 0.0
    index = min(len(positives) - 1, int(np.ceil(recall * len(positives))) - 1)
    return float(positives[max(index, 0)])


def calibrate(
    similarity: np.ndarray,
    is_duplicate: np.ndarray,
    precision: float = 0.995,
    recall: float = 0.98,
    rounds: int = 1000,
    seed: int = 0,
) -> Calibration:
    similarity = np.asarray(similarity, dtype=np.float64)
    is_duplicate = np.asarray(is_duplicate, dtype=bool)
    rng = np.random.default_rng(seed)
    dups, reviews = [], []
    for _ in range(rounds):
        pick = rng.integers(0, len(similarity), len(similarity))
        dups.append(duplicate_threshold(similarity[pick], is_duplicate[pick], precision))
        reviews.append(review_threshold(similarity[pick], is_duplicate[pick], recall))

    def fitted(point: float, samples: list[float]) -> Fitted:
        low, high = np.percentile(samples, [2.5, 97.5])
        return Fitted(round(point, 4), round(float(low), 4), round(float(high), 4))

    dup = duplicate_threshold(similarity, is_duplicate, precision)
    review = min(review_threshold(similarity, is_duplicate, recall), dup)
    return Calibration(
        fitted(dup, dups), fitted(review, reviews), len(similarity), int(is_duplicate.sum()), precision, recall
    )
