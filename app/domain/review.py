"""What a person decides about a `review` verdict, and what the machine would have guessed (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.domain.models import Thresholds


class Choice(StrEnum):
    DUPLICATE = "duplicate"  # a copy of the candidate: it leaves the indexes
    DISTINCT = "distinct"  # not a copy: unique, and never matched with that candidate again


def machine_guess(similarity: float | None, thresholds: Thresholds) -> Choice:
    """The side of the grey band's middle the similarity falls on: what the machine would have said."""
    if similarity is None:
        return Choice.DISTINCT
    middle = (thresholds.review + thresholds.duplicate) / 2
    return Choice.DUPLICATE if similarity >= middle else Choice.DISTINCT


@dataclass(frozen=True)
class Settled:
    """One person's decision, with what it replaced (so that undo restores it exactly)."""

    decision_id: int
    image_id: int
    choice: Choice
    candidate_id: int | None
    reviewer: str
    decided_at: datetime
    machine_guess: Choice
    before: dict[str, Any]
    undone_at: datetime | None = None
