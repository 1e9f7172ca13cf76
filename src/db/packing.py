"""Rows of numbers as the batch tables store them: one little-endian float64 blob per row.

float64 keeps every JSON number exactly as it was sent (GET returns it unchanged) and
every probability the model gave; the blob's length tells the row's width (8 bytes each).
"""

from collections.abc import Sequence

import numpy as np

STORED_TYPE = np.dtype("<f8")


def pack_rows(rows: np.ndarray | Sequence[Sequence[float]]) -> list[bytes]:
    """One blob per row of a 2-D array (or list of rows)."""
    array = np.ascontiguousarray(rows, dtype=STORED_TYPE)
    if array.ndim != 2:
        raise ValueError(f"expected rows of numbers, got an array of shape {array.shape}")
    packed = array.tobytes()
    size = array.shape[1] * STORED_TYPE.itemsize
    return [packed[start : start + size] for start in range(0, len(packed), size)]


def unpack_row(blob: bytes) -> list[float]:
    return np.frombuffer(blob, dtype=STORED_TYPE).tolist()


def unpack_rows(blobs: Sequence[bytes], width: int) -> np.ndarray:
    """The blobs as one (len(blobs), width) float64 array; ValueError if one is not `width` wide."""
    joined = b"".join(blobs)
    if len(joined) != len(blobs) * width * STORED_TYPE.itemsize or any(
        len(blob) != width * STORED_TYPE.itemsize for blob in blobs
    ):
        widths = sorted({len(blob) // STORED_TYPE.itemsize for blob in blobs})
        raise ValueError(f"stored rows of {widths} numbers, expected {width}")
    return np.frombuffer(joined, dtype=STORED_TYPE).reshape(len(blobs), width)
