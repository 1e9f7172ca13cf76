"""The one validation rule, on the schema (the fast check: tests/test_bodies.py)."""

import json

import pytest
from pydantic import ValidationError

from tests.bad_inputs import BAD_BODIES, IrisRequest


def test_accepts_ints_and_floats_and_keeps_every_row():
    request = IrisRequest.model_validate_json('{"data": [[5, 3.5, 1.4, 0.2], [1, 2, 3, 4]]}')
    assert request.as_array().shape == (2, 4)
    assert request.as_array().dtype.name == "float32"


def _parses(body: str) -> bool:
    try:
        json.loads(body)
    except json.JSONDecodeError:
        return False
    return True


# Bodies that are not JSON at all never reach the schema; the HTTP tests cover them.
JSON_BAD_BODIES = [case for case in BAD_BODIES if _parses(case[1])]


@pytest.mark.parametrize(
    ("case", "body", "message"), JSON_BAD_BODIES, ids=[case[0] for case in JSON_BAD_BODIES]
)
def test_rejects_bad_bodies(case, body, message):
    parsed = json.loads(body)  # Python's parser, like FastAPI's, accepts NaN and Infinity
    with pytest.raises(ValidationError) as error:
        IrisRequest.model_validate(parsed)
    assert message in str(error.value)
