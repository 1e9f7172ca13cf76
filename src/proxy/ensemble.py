"""The ensemble's answer: per row, the class whose service gives the highest P(class)."""

from dataclasses import dataclass

import numpy as np

from src.proxy.backends import BackendResult


@dataclass(frozen=True)
class Labels:
    labels: list[str]
    probas: list[float]
    unavailable: list[str]


def best_labels(results: dict[str, BackendResult], rows: int) -> Labels | None:
    """Among the services that answered for every row; None when none did.

    Each answer's body is its P(class) per row (`class_probabilities`, the fan-out's check).
    """
    # A service that answered for another number of rows cannot be compared row by row.
    healthy = [result for result in results.values() if result.ok and len(result.body) == rows]
    if not healthy:
        return None
    answered = {result.service for result in healthy}
    class_probability = np.stack([result.body for result in healthy])
    best = class_probability.argmax(axis=0)
    names = np.array([result.service for result in healthy])
    return Labels(
        labels=names[best].tolist(),
        probas=class_probability[best, np.arange(rows)].tolist(),
        unavailable=[name for name in results if name not in answered],
    )
