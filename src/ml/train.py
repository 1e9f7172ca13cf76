"""Train a model set from one of scikit-learn's bundled datasets and export it to ONNX.

A model set: one multiclass model (the batch job's, named after the dataset), one binary
model per class (the class services', named after the class), the class names
(`label.json`) and an example row (`sample.json`), in the model repository layout
`<output-dir>/<model>/<version>/model.onnx` (src/ml/repository.py).
Run with `python -m src.ml.train [--dataset wine]` (or `make models` for iris). Fixed
seeds make the output deterministic, so the committed files can be re-created and
compared at will.
"""

import argparse
import json
import logging
import warnings
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn import datasets
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from src.ml.predictor import SAMPLE_FILE
from src.ml.repository import ModelRepository

logger = logging.getLogger(__name__)

SEED = 42
# scikit-learn's bundled classification sets (no download): name -> loader.
DATASETS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
}
DEFAULT_DATASET = "iris"
LABEL_FILE = "label.json"


def model_path(output_dir: Path, model: str, version: int = 1) -> Path:
    """Where a model set's model lives: `<output_dir>/<model>/<version>/model.onnx`."""
    return ModelRepository(output_dir).model_path(model, version)


def load_data(dataset: str = DEFAULT_DATASET) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A bundled dataset: features as float32, the targets, and the class names."""
    bunch = DATASETS[dataset]()
    class_names = [str(name) for name in bunch.target_names]
    return bunch.data.astype(np.float32), bunch.target, class_names


def make_classifier() -> Pipeline:
    """Scaled SVC with calibrated probabilities (the book's recipe).

    `SVC(probability=True)` is deprecated since scikit-learn 1.9; a single
    calibrated SVC (`ensemble=False`) is its documented replacement, and its
    default CV split is unshuffled, so training is deterministic.
    """
    return Pipeline(
        [
            ("normalize", StandardScaler()),
            ("svc", CalibratedClassifierCV(SVC(), ensemble=False)),
        ]
    )


def cross_validated_accuracy(features: np.ndarray, target: np.ndarray) -> float:
    """Mean 5-fold stratified accuracy of the recipe: the honest estimate for unseen rows."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    return float(cross_val_score(make_classifier(), features, target, cv=folds).mean())


def export(classifier: Pipeline, sample: np.ndarray, path: Path) -> None:
    # zipmap=False gives a plain (N, classes) probability tensor, which is what the
    # predictor reads fastest; it still accepts ZipMap models from other exports.
    with warnings.catch_warnings():
        # skl2onnx reads SVC.probA_/probB_, which scikit-learn 1.9 flags as deprecated.
        warnings.simplefilter("ignore", FutureWarning)
        onnx_model = to_onnx(
            classifier,
            sample[:1],
            options={id(classifier): {"zipmap": False}},
            target_opset=17,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onnx_model.SerializeToString())


def train_all(
    output_dir: Path, dataset: str = DEFAULT_DATASET, version: int = 1
) -> dict[str, float]:
    """Train a dataset's model set on all its rows and export it as `version` of each
    model; return each model's cross-validated accuracy."""
    output_dir.mkdir(parents=True, exist_ok=True)
    features, target, class_names = load_data(dataset)
    accuracies = {"multiclass": cross_validated_accuracy(features, target)}
    export(
        make_classifier().fit(features, target),
        features,
        model_path(output_dir, dataset, version),
    )

    for index, class_name in enumerate(class_names):
        # Label 0 is "this class", so column 0 of the probabilities is P(this class)
        # and column 1 is P(not this class), the order the services promise.
        binary_target = (target != index).astype(np.int64)
        accuracies[class_name] = cross_validated_accuracy(features, binary_target)
        binary = make_classifier().fit(features, binary_target)
        export(binary, features, model_path(output_dir, class_name, version))

    labels = {str(index): name for index, name in enumerate(class_names)}
    (output_dir / LABEL_FILE).write_text(json.dumps(labels, indent=2) + "\n")
    # The first row, each number as its shortest float32 spelling: every process's example.
    sample = [float(str(value)) for value in features[0]]
    (output_dir / SAMPLE_FILE).write_text(json.dumps(sample) + "\n")
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=Path("models"))
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=DEFAULT_DATASET)
    parser.add_argument("--version", type=int, default=1, help="the version folder to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, accuracy in train_all(args.output_dir, args.dataset, args.version).items():
        logger.info("%s: 5-fold cross-validated accuracy %.3f", name, accuracy)
    logger.info("models written to %s", args.output_dir)


if __name__ == "__main__":
    main()
