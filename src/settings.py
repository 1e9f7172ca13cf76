"""One settings class per process, read from the environment (names of the original pattern).

Each process builds its settings once, in its lifespan or `main()`, never at import
time, so tests can start processes with any environment they like.
"""

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MODELS_DIR = Path("models")
DEFAULT_LABEL_FILEPATH = MODELS_DIR / "label.json"
# The class services' default ports, in label order (setosa, versicolor, virginica).
FIRST_SERVICE_PORT = 9101
SERVICE_ENV_PREFIX = "SERVICE_"


class CommonSettings(BaseSettings):
    # An empty variable (PORT= , as `${PORT:-}` gives) means "use the default".
    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)

    host: str = "0.0.0.0"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    max_rows: int = Field(10_000, ge=1)


class ServiceSettings(CommonSettings):
    """A class service: `MODE` picks the binary model, `PORT` defaults by class."""

    mode: str = "setosa"
    port: int | None = None
    model_filepath: Path | None = None
    label_filepath: Path = DEFAULT_LABEL_FILEPATH

    def resolved_model_filepath(self) -> Path:
        return self.model_filepath or MODELS_DIR / f"iris_svc_0_{self.mode}.onnx"


class ProxySettings(CommonSettings):
    """The proxy: one backend per `SERVICE_<NAME>=<base URL>` variable."""

    port: int = 9100
    backend_timeout: float = Field(2.0, gt=0, description="seconds for one backend call")
    backend_connections: int = Field(100, ge=1, description="pooled connections in all")
    # Filled from every SERVICE_<NAME> variable; a fourth class needs a variable, not code.
    services: dict[str, HttpUrl] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_services(cls, values: dict) -> dict:
        if not values.get("services"):
            found = {
                key[len(SERVICE_ENV_PREFIX) :].lower(): url
                for key, url in sorted(os.environ.items())
                if key.startswith(SERVICE_ENV_PREFIX) and url
            }
            values["services"] = found or _local_services()
        return values


def _local_services() -> dict[str, str]:
    """The three class services on this machine, for a proxy started with no SERVICE_* set."""
    names = ("setosa", "versicolor", "virginica")
    return {
        name: f"http://127.0.0.1:{FIRST_SERVICE_PORT + index}" for index, name in enumerate(names)
    }
