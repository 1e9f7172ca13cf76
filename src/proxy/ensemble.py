"""The ensemble's answer: per row, the class whose service gives the highest P(class)."""

from dataclasses import dataclass

import numpy as np

from src.proxy.backends import BackendResult


@dataclass(frozen=True)
class Labels:
    labels: list[str]
    probas: list[float]
    unavailable: list[str]
    # The model version of each service that answered (by its answer's model_version).
    model_versions: dict[str, str]


def best_labels(results: dict[str, BackendResult], rows: int) -> Labels | None:
    """Among the services that answered for every row; None when none did.

    Each answer's body is a ClassAnswer (`class_probabilities`, the fan-out's check).
    """
    # A service that answered for another number of rows cannot be compared row by row.
    healthy = [result for result in results.values() if result.ok and len(result.body) == rows]
    if not healthy:
        return None
    answered = {result.service for result in healthy}
    class_probability = np.stack([result.body.p_class for result in healthy])
    best = class_probability.argmax(axis=0)
    names = np.array([result.service for result in healthy])
    return Labels(
        labels=names[best].tolist(),
        probas=class_probability[best, np.arange(rows)].tolist(),
        unavailable=[name for name in results if name not in answered],
        model_versions={
            result.service: result.body.model_version
            for result in healthy
            if result.body.model_version is not None
        },
    )
