"""The proxy's check of a class service's answer."""

import pytest

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
