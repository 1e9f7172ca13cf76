"""The one ONNX Runtime predictor every process uses (KServe style: `load()`, then `predict()`)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.errors import ModelLoadError

if TYPE_CHECKING:
    import onnxruntime as ort

# Names sklearn-onnx, onnxmltools and tf2onnx give the probability output.
_PROBABILITY_OUTPUT_NAMES = ("probabilities", "output_probability", "probability", "probs")


def load_labels(label_path: Path) -> list[str]:
    """Class names in output-column order, from a `{"0": "setosa", ...}` file."""
    try:
        raw = json.loads(Path(label_path).read_text())
    except FileNotFoundError as error:
        raise ModelLoadError(f"label file not found: {label_path}") from error
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"label file {label_path} is not valid JSON: {error}") from error
    return [raw[key] for key in sorted(raw, key=int)]


class Predictor:
    """Scores rows of float features; vectorised and safe to call from many threads.

    ONNX Runtime's `InferenceSession.run` is thread-safe and releases the GIL, so one
    session per process serves every request or worker thread.
    """

    def __init__(self, model_path: Path | str) -> None:
        self.model_path = Path(model_path)
        self._session: ort.InferenceSession | None = None
        self._input_name = ""
        self._output_name = ""
        self._output_is_zipmap = False

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
        self._input_name = session.get_inputs()[0].name
        output = _probability_output(session)
        self._output_name = output.name
        self._output_is_zipmap = output.type.startswith("seq(map")
        self._session = session
        return self

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (len(rows), n_classes), in one ONNX Runtime call."""
        if self._session is None:
            raise RuntimeError("Predictor.load() must be called before predict_proba()")
        features = np.ascontiguousarray(rows, dtype=np.float32)
        (output,) = self._session.run([self._output_name], {self._input_name: features})
        if self._output_is_zipmap:
            # A ZipMap is a list of {class: probability} dicts, one per row, keys in class order.
            return np.array([list(row.values()) for row in output], dtype=np.float32)
        return np.asarray(output, dtype=np.float32)


def _probability_output(session: "ort.InferenceSession") -> "ort.NodeArg":
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
    raise ModelLoadError(f"no probability output among the model's outputs ({names})")
