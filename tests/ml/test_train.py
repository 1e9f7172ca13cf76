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


IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


def test_label_file_names_the_three_classes_in_output_order():
    labels = json.loads((MODELS / "label.json").read_text())
    assert labels == {"0": "setosa", "1": "versicolor", "2": "virginica"}
    assert train.load_data()[2] == IRIS_CLASSES


def test_sample_file_is_the_first_iris_row():
    assert json.loads((MODELS / "sample.json").read_text()) == [5.1, 3.5, 1.4, 0.2]


def test_multiclass_model_is_accurate_on_iris():
    features, target, _ = train.load_data()
    multiclass = Predictor(train.model_path(MODELS, "iris")).load()
    probabilities = multiclass.predict_proba(features)
    assert probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == target).mean() >= 0.95


def test_training_recipe_generalises_under_cross_validation():
    features, target, _ = train.load_data()
    assert train.cross_validated_accuracy(features, target) >= 0.95


@pytest.mark.parametrize("expected", list(CLASSIC_SAMPLES))
def test_binary_models_rank_each_classic_sample_as_its_class(expected):
    row = np.array([CLASSIC_SAMPLES[expected]], dtype=np.float32)
    p_this_class = {
        name: Predictor(train.model_path(MODELS, name)).load().predict_proba(row)[0]
        for name in IRIS_CLASSES
    }
    # Each binary model answers [P(its class), P(not its class)].
    for probabilities in p_this_class.values():
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert max(p_this_class, key=lambda name: p_this_class[name][0]) == expected


def test_retraining_reproduces_the_committed_models_byte_for_byte(tmp_path):
    train.train_all(tmp_path)
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.*"))
    assert written == sorted(str(path.relative_to(MODELS)) for path in MODELS.rglob("*.*"))
    for name in written:
        assert (tmp_path / name).read_bytes() == (MODELS / name).read_bytes(), name


def test_another_dataset_exports_a_model_set_of_its_own_width_and_classes(wine_models):
    labels = json.loads((wine_models / "label.json").read_text())
    assert labels == {"0": "class_0", "1": "class_1", "2": "class_2"}
    sample = json.loads((wine_models / "sample.json").read_text())
    assert len(sample) == 13 and sample[0] == 14.23
    features, target, _ = train.load_data("wine")
    multiclass = Predictor(train.model_path(wine_models, "wine")).load()
    assert (multiclass.n_features, multiclass.n_classes) == (13, 3)
    assert (multiclass.predict_proba(features).argmax(axis=1) == target).mean() >= 0.95
    for index, name in enumerate(labels.values()):
        binary = Predictor(train.model_path(wine_models, name)).load()
        assert (binary.n_features, binary.n_classes) == (13, 2)
        # Column 0 is P(this class): high for the class's own rows.
        p_this_class = binary.predict_proba(features)[:, 0]
        assert ((p_this_class > 0.5) == (target == index)).mean() >= 0.95
