"""Ports: what the service layer needs from the outside world, as `typing.Protocol`s. Adapters implement them."""

from app.ports.backends import Embedder, FetchedImage, ImageFetcher, VectorIndex
from app.ports.persistence import (
    Clock,
    DecisionLock,
    ImageRepository,
    QueueRepository,
    UnitOfWork,
    UnitsOfWork,
)

__all__ = [
    "Clock",
    "DecisionLock",
    "Embedder",
    "FetchedImage",
    "ImageFetcher",
    "ImageRepository",
    "QueueRepository",
    "UnitOfWork",
    "UnitsOfWork",
    "VectorIndex",
]
