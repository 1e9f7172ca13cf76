"""Train the iris models from scikit-learn's bundled data and export them to ONNX.

Run with `python -m src.ml.train` (or `make models`). Fixed seeds make the output
deterministic, so the committed files can be re-created and compared at will.
"""

import argparse
import json
import logging
import warnings
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_iris
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

logger = logging.getLogger(__name__)

SEED = 42
CLASS_NAMES = ("setosa", "versicolor", "virginica")
MULTICLASS_MODEL = "iris_svc.onnx"
LABEL_FILE = "label.json"


def binary_model_filename(class_name: str) -> str:
    return f"iris_svc_0_{class_name}.onnx"


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """The bundled iris data (150 rows, no download), features as float32."""
    iris = load_iris()
    return iris.data.astype(np.float32), iris.target


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
    path.write_bytes(onnx_model.SerializeToString())


def train_all(output_dir: Path) -> dict[str, float]:
    """Train every model on all of iris, export it; return each one's cross-validated accuracy."""
    output_dir.mkdir(parents=True, exist_ok=True)
    features, target = load_data()
    accuracies = {"multiclass": cross_validated_accuracy(features, target)}
    export(make_classifier().fit(features, target), features, output_dir / MULTICLASS_MODEL)

    for index, class_name in enumerate(CLASS_NAMES):
        # Label 0 is "this class", so column 0 of the probabilities is P(this class)
        # and column 1 is P(not this class), the order the services promise.
        binary_target = (target != index).astype(np.int64)
        accuracies[class_name] = cross_validated_accuracy(features, binary_target)
        binary = make_classifier().fit(features, binary_target)
        export(binary, features, output_dir / binary_model_filename(class_name))

    labels = {str(index): name for index, name in enumerate(CLASS_NAMES)}
    (output_dir / LABEL_FILE).write_text(json.dumps(labels, indent=2) + "\n")
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, accuracy in train_all(args.output_dir).items():
        logger.info("%s: 5-fold cross-validated accuracy %.3f", name, accuracy)
    logger.info("models written to %s", args.output_dir)


if __name__ == "__main__":
    main()
