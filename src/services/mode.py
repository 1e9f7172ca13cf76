"""What MODE decides for a class service: its class, its model file and its default port."""

import logging

from src.errors import ModelLoadError
from src.ml.predictor import Predictor, load_labels, load_sample
from src.schemas import RowSpec
from src.settings import FIRST_SERVICE_PORT, ServiceSettings

logger = logging.getLogger(__name__)


def check_mode(settings: ServiceSettings) -> list[str]:
    """The class labels; raises ModelLoadError when MODE is not one of them."""
    labels = load_labels(settings.label_filepath)
    if settings.mode not in labels:
        raise ModelLoadError(
            f"MODE={settings.mode!r} is not a class of {settings.label_filepath}; "
            f"use one of {', '.join(labels)}"
        )
    return labels


def service_port(settings: ServiceSettings) -> int:
    """PORT, or the class's default: 9101 for the first label, 9102 for the next, ..."""
    if settings.port is not None:
        return settings.port
    return FIRST_SERVICE_PORT + check_mode(settings).index(settings.mode)


def load_service_predictor(settings: ServiceSettings) -> Predictor:
    """MODE's binary model, loaded: [P(class), P(not class)] per row, or ModelLoadError."""
    check_mode(settings)
    predictor = Predictor(settings.resolved_model_filepath()).load()
    predictor.require_classes(
        2, f"the class service of {settings.mode!r} ([P(class), P(not class)])"
    )
    logger.info(
        "class service %s loaded %s: rows of %d numbers",
        settings.mode,
        predictor.model_path,
        predictor.n_features,
    )
    return predictor


def service_row_spec(settings: ServiceSettings, predictor: Predictor) -> RowSpec:
    """The model's row width, with the model set's example row (sample.json) when it has one."""
    return RowSpec.of_width(
        predictor.n_features, load_sample(settings.label_filepath, predictor.n_features)
    )
