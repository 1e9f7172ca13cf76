"""The model a class service serves, and how a new version replaces it with nothing dropped.

A request reads `ModelSlot.current` once and keeps that `ServedModel` to its end, so a
swap (one assignment) lets requests in flight finish on the version they started with,
and every request after `load()` returns is served by the new one. A version that does
not load, or does not fit (another row width, not binary), leaves the old one serving.
"""

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import Gauge

from src.errors import ModelLoadError
from src.ml.predictor import Predictor, load_sample
from src.ml.repository import resolve_model_file
from src.schemas import RowSpec
from src.settings import ServiceSettings

logger = logging.getLogger(__name__)

SERVED_MODEL = Gauge(
    "served_model_info", "1 for the model version this process serves", ["model", "version"]
)


class ModelUnavailable(RuntimeError):
    """The model was unloaded (POST /v2/repository/models/<name>/unload): a 503 until loaded."""


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str
    predictor: Predictor

    def predict_proba(self, rows):
        return self.predictor.predict_proba(rows)


def _load(settings: ServiceSettings) -> ServedModel:
    """MODE's binary model (MODEL_VERSION, else the newest present), loaded and checked."""
    number, path = resolve_model_file(
        settings.model_repository,
        settings.mode,
        settings.model_version,
        settings.model_filepath,
    )
    predictor = Predictor(path).load()
    predictor.require_classes(
        2, f"the class service of {settings.mode!r} ([P(class), P(not class)])"
    )
    return ServedModel(settings.mode, str(number), predictor)


class ModelSlot:
    """The one `ServedModel` of a class service; `load()` and `unload()` replace it whole."""

    def __init__(self, settings: ServiceSettings, served: ServedModel, row_spec: RowSpec):
        self.settings = settings
        self.row_spec = row_spec
        self._current: ServedModel | None = None
        self._lock = asyncio.Lock()
        self._swap(served)

    @property
    def current(self) -> ServedModel:
        served = self._current
        if served is None:
            raise ModelUnavailable(
                f"model {self.settings.mode!r} is unloaded; "
                f"POST /v2/repository/models/{self.settings.mode}/load serves it again"
            )
        return served

    @property
    def loaded(self) -> ServedModel | None:
        return self._current

    async def load(self) -> ServedModel:
        """The newest version (or MODEL_VERSION), loaded off the event loop and swapped in.

        Raises ModelLoadError, the old version still serving, when it does not fit.
        """
        async with self._lock:  # two loads at once would race to swap
            served = await asyncio.to_thread(_load, self.settings)
            if served.predictor.n_features != self.row_spec.n_features:
                raise ModelLoadError(
                    f"model {served.predictor.model_path}: takes rows of "
                    f"{served.predictor.n_features} numbers; this service serves "
                    f"{self.row_spec.description} (a new width needs new services and a "
                    "restarted proxy)"
                )
            self._swap(served)
            return served

    def unload(self) -> None:
        if self._current is not None:
            SERVED_MODEL.remove(self._current.name, self._current.version)
            logger.info("model %s version %s unloaded", self._current.name, self._current.version)
        self._current = None

    def _swap(self, served: ServedModel) -> None:
        old, self._current = self._current, served
        SERVED_MODEL.labels(served.name, served.version).set(1)
        if old is not None and old.version != served.version:
            SERVED_MODEL.remove(old.name, old.version)
        logger.info(
            "class service %s serves version %s (%s): %s",
            served.name,
            served.version,
            served.predictor.model_path,
            self.row_spec.description,
        )


def load_served_model(settings: ServiceSettings) -> tuple[ServedModel, RowSpec]:
    """The model to serve at start-up and its rows (with the set's sample.json row)."""
    served = _load(settings)
    width = served.predictor.n_features
    return served, RowSpec.of_width(width, load_sample(settings.label_filepath, width))
