"""The fast body check (src/bodies.py) against the schema's rule, which it must never loosen."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from src.bodies import valid_rows
from tests.bad_inputs import BAD_BODIES, IrisRequest


def valid_row_count(raw: bytes, max_rows: int) -> int | None:
    rows = valid_rows(raw, max_rows, 4)
    return None if rows is None else len(rows)


# The fast check (valid_rows) must never accept what the schema rejects.
def _schema_row_count(raw: bytes, max_rows: int) -> int | None:
    try:
        request = IrisRequest.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None
    return len(request.data) if len(request.data) <= max_rows else None


@pytest.mark.parametrize(("case", "body", "message"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_the_fast_check_declines_every_bad_body(case, body, message):
    assert valid_row_count(body.encode(), max_rows=10) is None


@pytest.mark.parametrize(
    "body",
    [
        '{"data": [[1, 2, 3, 4]], "extra": 1}',  # extra keys are forbidden
        '{"data": [[1, 2, 3, "4"]]}',
        '{"data": [[1, 2, 3, 1e400]]}',  # beyond float64: infinity
        '{"data": [[[1, 2, 3, 4]]]}',
        '{"data": [[1, 2], [3, 4, 5, 6]]}',
        '{"data": [{"a": 1}]}',
        '{"data": [[1, 2, 3, 4]], "data": [[1, 2, 3, 4]]}',  # duplicate key: the schema decides
        '{"data": ' + json.dumps([[1, 2, 3, 4]] * 11) + "}",  # over max_rows
    ],
)
def test_the_fast_check_declines_odd_bodies(body):
    assert valid_row_count(body.encode(), max_rows=10) is None


def test_the_fast_check_accepts_ints_floats_and_any_spacing():
    assert valid_row_count(b'{ "data" : [ [5, 3.5, 1.4, 0.2],[1,2,3,-4e-3] ] }', 10) == 2
    assert valid_row_count(json.dumps({"data": [[1, 2, 3, 4]] * 10}).encode(), 10) == 10


_json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["5.1", "", "data", "true"]),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=30,
)
_row = st.lists(
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000),
    min_size=4,
    max_size=4,
)
_body = st.one_of(
    st.fixed_dictionaries({"data": st.lists(_row, max_size=12)}),
    st.fixed_dictionaries({"data": st.lists(_json_value, max_size=6)}),
    st.dictionaries(st.sampled_from(["data", "rows", "Data"]), _json_value, max_size=2),
    _json_value,
)


@settings(max_examples=500, deadline=None)
@given(body=_body)
def test_the_fast_check_agrees_with_the_schema_or_defers_to_it(body):
    raw = json.dumps(body).encode()  # NaN and Infinity as Python writes them
    fast = valid_row_count(raw, max_rows=10)
    if fast is not None:
        assert fast == _schema_row_count(raw, max_rows=10)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(_row, min_size=1, max_size=10))
def test_the_fast_check_accepts_every_valid_body(rows):
    fast = valid_rows(json.dumps({"data": rows}).encode(), 10, 4)
    # The same numbers as the schema reads, not only as many rows.
    assert fast is not None and fast.tolist() == np.array(rows, dtype=np.float64).tolist()
