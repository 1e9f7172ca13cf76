"""TEST_RESULTS.md must show what the committed models produce, so it cannot drift."""

import json
import re

import numpy as np
import pytest

from src.ml.predictor import Predictor
from tooling.processes import REPO_ROOT

DOCUMENT = REPO_ROOT / "TEST_RESULTS.md"
MODELS = REPO_ROOT / "models"


def _response_after(title: str) -> dict:
    """The JSON response recorded under the first exchange with this bold title."""
    text = DOCUMENT.read_text()
    start = text.index(f"**{title}**")
    match = re.compile(r"HTTP \d+ in [\d.]+ ms[^\n]*\n\n```json\n(.*?)\n```", re.S).search(
        text, start
    )
    assert match, f"no recorded response after {title!r}"
    return json.loads(match[1])


def _p_class(model: str, row: list[float]) -> float:
    predictor = Predictor(MODELS / model / "1" / "model.onnx").load()
    return float(predictor.predict_proba(np.array([row]))[0, 0])


def test_document_was_written_by_the_script():
    text = DOCUMENT.read_text()
    assert "Written by `make results`" in text
    assert re.search(r"- Commit: [0-9a-f]{7}", text)
    # The summary is filled in after the suite (this test included) has run.
    assert re.search(r"- pytest: `(\d+ passed|PYTEST_SUMMARY)", text)


@pytest.mark.parametrize(
    ("title", "row", "label"),
    [
        ("Label of a setosa sample", [5.1, 3.5, 1.4, 0.2], "setosa"),
        ("Label of a virginica sample", [6.5, 3.0, 5.5, 1.8], "virginica"),
    ],
)
def test_recorded_labels_are_what_the_committed_models_give(title, row, label):
    recorded = _response_after(title)["prediction"]
    assert recorded["label"] == label
    assert recorded["proba"] == pytest.approx(_p_class(label, row), abs=1e-6)


def test_recorded_batch_probabilities_are_what_the_multiclass_model_gives():
    predictor = Predictor(MODELS / "iris" / "1" / "model.onnx").load()
    expected = predictor.predict_proba(np.array([[5.1, 3.5, 1.4, 0.2]]))[0]
    text = DOCUMENT.read_text()
    first_item = re.search(r"\*\*Item (\d+) after the pass\*\*", text)
    assert first_item, "no batch result recorded"
    recorded = _response_after(f"Item {first_item[1]} after the pass")
    assert recorded["label"] == "setosa"
    got = [recorded["prediction"][name] for name in ("setosa", "versicolor", "virginica")]
    np.testing.assert_allclose(got, expected, atol=1e-6)
