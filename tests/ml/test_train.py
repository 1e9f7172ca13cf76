"""The committed models: accuracy, per-class ranking, and reproducible training."""

import json

import numpy as np
import pytest

from src.ml import train
from src.ml.predictor import Predictor
from tooling.processes import REPO_ROOT

MODELS = REPO_ROOT / "models"
CLASSIC_SAMPLES = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [5.9, 3.0, 4.2, 1.5],
    "virginica": [6.5, 3.0, 5.5, 1.8],
}


def test_label_file_names_the_three_classes_in_output_order():
    labels = json.loads((MODELS / "label.json").read_text())
    assert labels == {"0": "setosa", "1": "versicolor", "2": "virginica"}


def test_multiclass_model_is_accurate_on_iris():
    features, target = train.load_data()
    probabilities = Predictor(MODELS / train.MULTICLASS_MODEL).load().predict_proba(features)
    assert probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == target).mean() >= 0.95


def test_training_recipe_generalises_under_cross_validation():
    features, target = train.load_data()
    assert train.cross_validated_accuracy(features, target) >= 0.95


@pytest.mark.parametrize("expected", list(CLASSIC_SAMPLES))
def test_binary_models_rank_each_classic_sample_as_its_class(expected):
    row = np.array([CLASSIC_SAMPLES[expected]], dtype=np.float32)
    p_this_class = {
        name: Predictor(MODELS / train.binary_model_filename(name)).load().predict_proba(row)[0]
        for name in train.CLASS_NAMES
    }
    # Each binary model answers [P(its class), P(not its class)].
    for probabilities in p_this_class.values():
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert max(p_this_class, key=lambda name: p_this_class[name][0]) == expected


def test_retraining_reproduces_the_committed_models(tmp_path):
    train.train_all(tmp_path)
    features, _ = train.load_data()
    for filename in [train.MULTICLASS_MODEL, *map(train.binary_model_filename, train.CLASS_NAMES)]:
        committed = Predictor(MODELS / filename).load().predict_proba(features)
        retrained = Predictor(tmp_path / filename).load().predict_proba(features)
        np.testing.assert_array_equal(committed, retrained, err_msg=filename)
    assert (tmp_path / "label.json").read_text() == (MODELS / "label.json").read_text()
