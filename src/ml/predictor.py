"""The one ONNX Runtime predictor every process uses (KServe style: `load()`, then `predict()`).

Any ONNX classifier with one 2-D float input `[N, F]` and a probability output (a tensor
`[N, K]` or a ZipMap) is served: F, the input's name and type, and K are read from the
file at `load()`, and a model that does not fit stops it with one line naming the file.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.errors import ModelLoadError

if TYPE_CHECKING:
    import onnxruntime as ort

# The input types a row of JSON numbers can be given as, and the numpy type of each.
_FLOAT_INPUTS = {"tensor(float)": np.float32, "tensor(double)": np.float64}
# Names sklearn-onnx, onnxmltools and tf2onnx give the probability output.
SAMPLE_FILE = "sample.json"
_PROBABILITY_OUTPUT_NAMES = ("probabilities", "output_probability", "probability", "probs")


def load_labels(label_path: Path) -> list[str]:
    """Class names in output-column order, from a `{"0": "setosa", ...}` file."""
    try:
        raw = json.loads(Path(label_path).read_text())
    except FileNotFoundError as error:
        raise ModelLoadError(f"label file not found: {label_path}") from error
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"label file {label_path} is not valid JSON: {error}") from error
    if not isinstance(raw, dict) or not raw:
        raise ModelLoadError(f"label file {label_path} must map column indexes to class names")
    try:
        return [str(raw[key]) for key in sorted(raw, key=int)]
    except ValueError:
        raise ModelLoadError(
            f'label file {label_path}: keys must be column indexes ("0", "1", ...)'
        ) from None


def sample_filepath(label_path: Path) -> Path:
    """Where a model set keeps its example row: `sample.json` beside its label file."""
    return Path(label_path).parent / SAMPLE_FILE


def load_sample(label_path: Path, n_features: int) -> list[float] | None:
    """The model set's example row (`[5.1, 3.5, ...]`), or None when the set has none."""
    path = sample_filepath(label_path)
    try:
        sample = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"sample file {path} is not valid JSON: {error}") from error
    if (
        not isinstance(sample, list)
        or len(sample) != n_features
        or not all(isinstance(value, int | float) for value in sample)
    ):
        raise ModelLoadError(f"sample file {path} must be one row of {n_features} numbers")
    return [float(value) for value in sample]


class Predictor:
    """Scores rows of float features; vectorised and safe to call from many threads.

    ONNX Runtime's `InferenceSession.run` is thread-safe and releases the GIL, so one
    session per process serves every request or worker thread.
    """

    def __init__(self, model_path: Path | str) -> None:
        self.model_path = Path(model_path)
        self._session: ort.InferenceSession | None = None
        self._input_name = ""
        self._input_type: type[np.floating] = np.float32
        self._output_name = ""
        self._output_is_zipmap = False
        self.n_features = 0
        self.n_classes = 0

    def load(self) -> "Predictor":
        if not self.model_path.is_file():
            raise ModelLoadError(f"model file not found: {self.model_path}")
        # Imported here, not at the top: the API imports this module for load_labels and
        # needs neither onnxruntime's start-up cost nor its start-up messages.
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Requests are small and many: one thread per call scales better across
        # concurrent callers than several threads fighting over two cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"cannot load {self.model_path}: {error}") from error
        where = f"model {self.model_path}"
        self._input_name, self._input_type, self.n_features = _float_input(session, where)
        output = _probability_output(session, where)
        self._output_name = output.name
        self._output_is_zipmap = output.type.startswith("seq(map")
        self._session = session
        try:
            # The output's width is often left symbolic in the file; one row of zeros tells.
            probabilities = self.predict_proba(np.zeros((1, self.n_features)))
        except Exception as error:  # onnxruntime raises its own untyped errors
            self._session = None
            raise ModelLoadError(f"{where}: cannot score a row of zeros: {error}") from error
        if probabilities.ndim != 2 or probabilities.shape[0] != 1:
            self._session = None
            raise ModelLoadError(
                f"{where}: output {output.name!r} gives shape {list(probabilities.shape)} "
                "for one row; expected [1, classes]"
            )
        self.n_classes = probabilities.shape[1]
        return self

    def require_classes(self, n_classes: int, what: str) -> "Predictor":
        """Itself, or ModelLoadError when it does not score `n_classes` classes."""
        if self.n_classes != n_classes:
            raise ModelLoadError(
                f"model {self.model_path}: output {self._output_name!r} gives "
                f"{self.n_classes} probabilities per row; {what} needs {n_classes}"
            )
        return self

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (len(rows), n_classes), in one ONNX Runtime call."""
        if self._session is None:
            raise RuntimeError("Predictor.load() must be called before predict_proba()")
        features = np.ascontiguousarray(rows, dtype=self._input_type)
        (output,) = self._session.run([self._output_name], {self._input_name: features})
        if self._output_is_zipmap:
            # A ZipMap is a list of {class: probability} dicts, one per row, keys in class order.
            return np.array([list(row.values()) for row in output], dtype=np.float32)
        return np.asarray(output, dtype=np.float32)


def _float_input(session: "ort.InferenceSession", where: str) -> tuple[str, type[np.floating], int]:
    """The model's one input: its name, numpy type and width F, if it is a float [N, F]."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(tensor.name for tensor in inputs)
        raise ModelLoadError(
            f"{where}: expected one input [N, features], got {len(inputs)} ({names})"
        )
    (tensor,) = inputs
    if tensor.type not in _FLOAT_INPUTS:
        raise ModelLoadError(
            f"{where}: input {tensor.name!r} is {tensor.type}; expected tensor(float) or "
            "tensor(double)"
        )
    shape = tensor.shape or []
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise ModelLoadError(
            f"{where}: input {tensor.name!r} has shape {shape}; expected [N, features] "
            "with a fixed number of features"
        )
    return tensor.name, _FLOAT_INPUTS[tensor.type], shape[1]


def _probability_output(session: "ort.InferenceSession", where: str) -> "ort.NodeArg":
    outputs = session.get_outputs()
    for output in outputs:
        if output.name.lower() in _PROBABILITY_OUTPUT_NAMES:
            return output
    for output in outputs:
        if output.type.startswith("seq(map") or (
            output.type == "tensor(float)" and len(output.shape or []) == 2
        ):
            return output
    names = ", ".join(f"{output.name}: {output.type}" for output in outputs)
    raise ModelLoadError(f"{where}: no probability output among its outputs ({names})")
