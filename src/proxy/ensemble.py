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
    """Among the services that answered for every row; None when none did."""
    # A service that answered for another number of rows cannot be compared row by row.
    healthy = [
        result
        for result in results.values()
        if result.ok and len(result.body["predictions"]) == rows
    ]
    if not healthy:
        return None
    answered = {result.service for result in healthy}
    # Column 0 of each service's answer is P(its class); pick the most probable per row.
    class_probability = np.array(
        [[row[0] for row in result.body["predictions"]] for result in healthy]
    )
    best = class_probability.argmax(axis=0)
    return Labels(
        labels=[healthy[winner].service for winner in best],
        probas=class_probability[best, np.arange(rows)].tolist(),
        unavailable=[name for name in results if name not in answered],
    )
