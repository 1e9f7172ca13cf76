"""The one predictor: tensor and ZipMap outputs, many threads, clear load errors."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from src.errors import ModelLoadError
from src.ml import train
from src.ml.predictor import Predictor, load_labels
from tooling.processes import REPO_ROOT

MULTICLASS = train.model_path(REPO_ROOT / "models", "iris")


@pytest.fixture(scope="module")
def iris_features():
    return train.load_data()[0]


def _export(classifier, features, path, zipmap):
    model = to_onnx(classifier, features[:1], options={id(classifier): {"zipmap": zipmap}})
    path.write_bytes(model.SerializeToString())
    return path


def test_zipmap_and_tensor_exports_give_the_same_probabilities(tmp_path, iris_features):
    target = train.load_data()[1]
    classifier = LogisticRegression(max_iter=500).fit(iris_features, target)
    tensor = Predictor(_export(classifier, iris_features, tmp_path / "t.onnx", False)).load()
    zipmap = Predictor(_export(classifier, iris_features, tmp_path / "z.onnx", True)).load()
    assert zipmap.predict_proba(iris_features).shape == (150, 3)
    np.testing.assert_allclose(
        zipmap.predict_proba(iris_features), tensor.predict_proba(iris_features), rtol=1e-6
    )
    np.testing.assert_allclose(
        tensor.predict_proba(iris_features), classifier.predict_proba(iris_features), atol=1e-5
    )


def test_one_call_scores_every_row(iris_features):
    rows = np.tile(iris_features, (20, 1))  # 3,000 rows
    probabilities = Predictor(MULTICLASS).load().predict_proba(rows)
    assert probabilities.shape == (3000, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_concurrent_calls_from_many_threads_match_serial_calls(iris_features):
    predictor = Predictor(MULTICLASS).load()
    chunks = [np.roll(iris_features, shift, axis=0) for shift in range(32)]
    serial = [predictor.predict_proba(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(predictor.predict_proba, chunks))
    for expected, got in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(expected, got)


def test_accepts_python_lists_of_ints_and_floats():
    probabilities = Predictor(MULTICLASS).load().predict_proba([[5, 3.5, 1, 0.2]])
    assert probabilities.dtype == np.float32 and probabilities.shape == (1, 3)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        Predictor(tmp_path / "absent.onnx").load()


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_text("not a model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        Predictor(bogus).load()


def test_predicting_before_load_is_refused():
    with pytest.raises(RuntimeError, match="load"):
        Predictor(MULTICLASS).predict_proba([[1, 2, 3, 4]])


def test_labels_come_in_column_order(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"10": "c", "2": "b", "0": "a"}')
    assert load_labels(path) == ["a", "b", "c"]
    with pytest.raises(ModelLoadError, match="label file not found"):
        load_labels(tmp_path / "absent.json")


def test_reads_the_models_width_input_and_classes(iris_features):
    predictor = Predictor(MULTICLASS).load()
    assert (predictor.n_features, predictor.n_classes) == (4, 3)
    assert predictor.require_classes(3, "the job") is predictor
    with pytest.raises(ModelLoadError, match=r"gives 3 probabilities per row; a service needs 2$"):
        predictor.require_classes(2, "a service")


def test_a_double_input_model_is_served(tmp_path, iris_features):
    target = train.load_data()[1]
    features = iris_features.astype(np.float64)
    classifier = LogisticRegression(max_iter=500).fit(features, target)
    predictor = Predictor(_export(classifier, features, tmp_path / "d.onnx", False)).load()
    assert predictor.n_features == 4
    np.testing.assert_allclose(
        predictor.predict_proba(features), classifier.predict_proba(features), atol=1e-5
    )


def _onnx_model(path, input_type, input_shape, output_shape):
    """A one-node model: Identity of its input, with the given input type and shapes."""
    from onnx import TensorProto, helper

    types = {"float": TensorProto.FLOAT, "int64": TensorProto.INT64}
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["probabilities"])],
        "bad",
        [helper.make_tensor_value_info("input", types[input_type], input_shape)],
        [helper.make_tensor_value_info("probabilities", types[input_type], output_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("input_type", "input_shape", "output_shape", "problem"),
    [
        (
            "int64",
            ["N", 4],
            ["N", 4],
            r"input 'input' is tensor\(int64\); expected tensor\(float\)",
        ),
        ("float", ["N", 2, 2], ["N", 2, 2], r"input 'input' has shape \['N', 2, 2\]; expected"),
        ("float", ["N", "F"], ["N", "F"], r"expected \[N, features\] with a fixed number"),
        ("float", ["N"], ["N"], r"has shape \['N'\]"),
    ],
)
def test_a_model_the_suite_cannot_serve_is_refused_in_one_line_naming_the_file(
    tmp_path, input_type, input_shape, output_shape, problem
):
    path = _onnx_model(tmp_path / "bad.onnx", input_type, input_shape, output_shape)
    with pytest.raises(ModelLoadError, match=problem) as error:
        Predictor(path).load()
    assert str(path) in str(error.value) and "\n" not in str(error.value)
