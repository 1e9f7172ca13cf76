"""The proxy's check of a class service's answer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.proxy.bodies import class_probabilities


def test_class_probabilities_are_column_0_of_a_binary_prediction():
    body = {"prediction": [0.9, 0.1], "predictions": [[0.9, 0.1], [0.2, 0.8]]}
    answer = class_probabilities(body)
    assert answer.p_class.tolist() == [0.9, 0.2] and answer.model_version is None
    assert class_probabilities({**body, "model_version": "3"}).model_version == "3"


@pytest.mark.parametrize(
    "body",
    [
        {"unexpected": True},
        [[0.9, 0.1]],
        {"prediction": [0.9, 0.1]},
        {"prediction": [0.9, 0.1], "predictions": [[0.9, 0.1, 0.0]]},
        {"prediction": [0.9, 0.1], "predictions": [[0.9, 0.1], [0.2]]},
        {"prediction": [0.9, 0.1], "predictions": [0.9, 0.1]},
        {"prediction": [0.9], "predictions": [[0.9, 0.1]]},
        {"prediction": [0.9, 0.1], "predictions": [["high", "low"]]},
        {"prediction": [0.9, 0.1], "predictions": [[None, 0.1]]},
        {"prediction": [0.9, 0.1], "predictions": [[{"p": 1}, 0.1]]},
    ],
)
def test_class_probabilities_reject_any_other_answer(body):
    with pytest.raises(ValueError, match="not a BinaryPrediction"):
        class_probabilities(body)


_number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000)


@settings(max_examples=200, deadline=None)
@given(predictions=st.lists(st.lists(_number, min_size=2, max_size=2), min_size=1, max_size=20))
def test_class_probabilities_read_the_same_numbers_as_numpy(predictions):
    body = {"prediction": [0.5, 0.5], "predictions": predictions}
    expected = np.array(predictions, dtype=np.float64)[:, 0]
    assert class_probabilities(body).p_class.tolist() == expected.tolist()
