"""The proxy's check of class services' answers, with numpy (request bodies: src/bodies.py)."""

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClassAnswer:
    """What the proxy uses of a class service's answer: P(class) per row, and the version."""

    p_class: np.ndarray
    model_version: str | None

    def __len__(self) -> int:
        return len(self.p_class)


def _pairs(values: Any) -> np.ndarray | None:
    """`values` as a (rows, 2) array when plainly rows of two numbers, read as one flat run
    (about twice as fast as np.array on nested lists); None: let np.array decide and say why."""
    if type(values) is not list or not values or set(map(type, values)) != {list}:
        return None
    if set(map(len, values)) != {2}:
        return None
    try:
        flat = np.fromiter(
            itertools.chain.from_iterable(values), dtype=np.float64, count=2 * len(values)
        )
    except (ValueError, TypeError):  # an item that is no number
        return None
    return flat.reshape(-1, 2)


def class_probabilities(body: Any) -> ClassAnswer:
    """P(class) per row of a class service's answer; ValueError unless a BinaryPrediction.

    Checked with numpy rather than the schema: the proxy reads up to three of these per
    request, of up to MAX_ROWS rows each. Stricter than the schema where it matters here:
    every probability must be a finite number.
    """
    if type(body) is not dict or not {"prediction", "predictions"} <= body.keys():
        raise ValueError("not a BinaryPrediction: expected the keys prediction and predictions")
    try:
        first = np.array(body["prediction"], dtype=np.float64)
        every = _pairs(body["predictions"])
        if every is None:
            every = np.array(body["predictions"], dtype=np.float64)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a BinaryPrediction: {error}") from None
    if first.shape != (2,) or every.ndim != 2 or every.shape[1:] != (2,):
        raise ValueError(
            f"not a BinaryPrediction: prediction of shape {first.shape}, predictions of "
            f"shape {every.shape}; expected (2,) and (rows, 2)"
        )
    if not (np.isfinite(first).all() and np.isfinite(every).all()):
        raise ValueError("not a BinaryPrediction: a probability is not a finite number")
    version = body.get("model_version")
    return ClassAnswer(every[:, 0], version if isinstance(version, str) else None)
