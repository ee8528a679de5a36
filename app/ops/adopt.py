"""Adopting the old scripts' vectors (cloud path): re-embedding a few million historic images costs days of
DashScope quota, yet the old scripts stored every one in their DashVector collection, keyed by the upstream row.
Those vectors are read (never written), checked to be of the embedder's shape, and handed to the backfill: each
row is still fetched from the CDN for what a check needs besides (hashes, thumbnail, visual words) and decided
through the check layer, but not embedded. Rows with no doc there are embedded as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.domain.errors import ConfigurationError
from app.ports.backends import OldVectors

# The old scripts named a doc by the upstream row's id; another naming is a template of `{id}`.
DEFAULT_DOC_ID = "{id}"
CHUNK = 1024  # docs a fetch may name


@dataclass
class Adoption:
    vectors: dict[int, np.ndarray] = field(default_factory=dict)  # by upstream row id
    without_doc: list[int] = field(default_factory=list)  # rows the collection has no vector for: embedded
    collection_docs: int = 0  # docs in the collection: those beyond the adopted match no row in scope


async def adopt(
    source: OldVectors, rows: Sequence[int], *, dimension: int, model: str, doc_id: str = DEFAULT_DOC_ID
) -> Adoption:
    found_dimension, metric = await source.shape()
    if found_dimension != dimension or metric != "cosine":
        raise ConfigurationError(
            f"the collection {source.name!r} holds {found_dimension}-d {metric} vectors, but the embedder {model!r} "
            f"gives {dimension}-d cosine ones: they cannot be adopted (backfill without --adopt embeds them again)"
        )
    adoption = Adoption(collection_docs=await source.count())
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        names = {doc_id.format(id=row): row for row in chunk}
        found = await source.vectors(list(names))
        for name, row in names.items():
            if name in found:
                adoption.vectors[row] = found[name]
            else:
                adoption.without_doc.append(row)
    return adoption
