"""What MODE decides for a class service: its class and its default port."""

from src.errors import ModelLoadError
from src.ml.predictor import load_labels
from src.settings import FIRST_SERVICE_PORT, ServiceSettings


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
