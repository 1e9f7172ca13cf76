"""One settings class per process, read from the environment (names of the original pattern).

Each process builds its settings once, in its lifespan or `main()`, never at import
time, so tests can start processes with any environment they like.
"""

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

MODELS_DIR = Path("models")
DEFAULT_LABEL_FILEPATH = MODELS_DIR / "label.json"
# The class services' default ports, in label order: 9101 for the first class, 9102 ...
FIRST_SERVICE_PORT = 9101
SERVICE_ENV_PREFIX = "SERVICE_"
# Only a default: the proxy's backends when no SERVICE_* variable is set, namely the
# classes of the committed models/label.json, each on its class service's default port
# (`make run`). Any other set of classes is given by SERVICE_<NAME> variables, not code.
DEFAULT_LOCAL_CLASSES = ("setosa", "versicolor", "virginica")
# Four 17-digit numbers with signs, exponents, separators and indentation stay well under it.
BODY_BYTES_PER_ROW = 256


class CommonSettings(BaseSettings):
    # An empty variable (PORT= , as `${PORT:-}` gives) means "use the default".
    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)
    # How the process names itself in its answers ("proxy overloaded").
    process_name: ClassVar[str] = "process"

    host: str = "0.0.0.0"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    max_rows: int = Field(10_000, ge=1)
    # Longer than any client's idle-connection timeout (the proxy's BACKEND_KEEPALIVE,
    # load balancers' 60 s): a server that closes an idle connection first races the
    # client's next request on it, and that request fails.
    keep_alive_timeout: float = Field(
        65, gt=0, description="seconds the server keeps an idle connection open"
    )
    # Overload and hostile clients (src/admission.py, src/connections.py, docs/overload.md).
    max_in_flight: int = Field(48, ge=1, description="requests worked on at once; more wait")
    admission_wait: float = Field(
        0.025, ge=0, description="seconds a request waits for room before a 503"
    )
    admission_queue: int = Field(
        48, ge=0, description="requests that may wait for room; more get a 503 at once"
    )
    # Without X-Request-Timeout-Ms, a request's deadline; unset: none (the proxy then
    # keeps its BACKEND_TIMEOUT per call).
    request_timeout: float | None = Field(None, gt=0)
    max_body_bytes: int | None = Field(
        None, ge=1, description="413 above this; unset: what MAX_ROWS rows can take"
    )
    header_timeout: float = Field(
        5, gt=0, description="seconds a client has to send a request's headers"
    )
    max_connections: int = Field(2048, ge=1, description="open connections; more are closed")

    def resolved_max_body_bytes(self) -> int:
        # Room for MAX_ROWS rows of four full-precision numbers, generously spaced.
        return self.max_body_bytes or self.max_rows * BODY_BYTES_PER_ROW + 64 * 1024


class ServiceSettings(CommonSettings):
    """A class service: `MODE` names the binary model, `PORT` defaults by class.

    The model is `<MODEL_REPOSITORY>/<MODE>/<version>/model.onnx`, the newest version
    unless MODEL_VERSION pins one; MODEL_FILEPATH names one file instead (no versions).
    """

    process_name: ClassVar[str] = "service"

    mode: str = "setosa"
    port: int | None = None
    model_repository: Path = MODELS_DIR
    model_version: int | None = Field(None, ge=1, description="unset: the newest present")
    model_filepath: Path | None = None
    label_filepath: Path = DEFAULT_LABEL_FILEPATH
    # The bearer token of the model repository routes (load, unload); unset: no such routes.
    admin_token: SecretStr | None = None


def _local_services() -> dict[str, str]:
    """DEFAULT_LOCAL_CLASSES' class services on this machine, at their default ports."""
    return {
        name: f"http://127.0.0.1:{FIRST_SERVICE_PORT + index}"
        for index, name in enumerate(DEFAULT_LOCAL_CLASSES)
    }


class ProxySettings(CommonSettings):
    """The proxy: one backend per `SERVICE_<NAME>=<base URL>` variable."""

    process_name: ClassVar[str] = "proxy"

    port: int = 9100
    backend_timeout: float = Field(2.0, gt=0, description="seconds for one backend call")
    backend_connections: int = Field(100, ge=1, description="pooled connections in all")
    backend_keepalive: float = Field(
        15, gt=0, description="seconds an idle pooled connection is kept; below KEEP_ALIVE_TIMEOUT"
    )
    # Filled from every SERVICE_<NAME> variable (_ServicesFromEnv); a fourth class needs a
    # variable, not code. A variable may list several comma-separated URLs: the replicas.
    services: dict[str, tuple[HttpUrl, ...]] = Field(
        default_factory=_local_services, validate_default=True
    )
    # Replicas (src/proxy/replicas.py): every address a service's name resolves to.
    backend_connect_timeout: float = Field(
        1.0, gt=0, description="seconds to connect to a replica before trying another"
    )
    backend_resolve_interval: float = Field(
        2.0, gt=0, description="seconds between two lookups of a service's replicas"
    )
    backend_eject_after: int = Field(
        1, ge=1, description="consecutive failures that take one replica out of rotation"
    )
    backend_ejection: float = Field(
        5.0, gt=0, description="seconds an ejected replica stays out of rotation"
    )
    # `BACKEND_TIMEOUTS=virginica=5,setosa=1`: a slower model gets its own deadline.
    backend_timeouts: Annotated[dict[str, Annotated[float, Field(gt=0)]], NoDecode] = Field(
        default_factory=dict, description="per-service seconds, overriding BACKEND_TIMEOUT"
    )
    # Five in a row: one slow request or a restart's refused connection or two never open
    # it, and with BACKEND_TIMEOUT=2 a hung service costs about five timed-out calls before
    # it is skipped. Five seconds: a trial call every 5 s costs at most one BACKEND_TIMEOUT
    # per cool-down, and a recovered service is back within cool-down + one timeout (7 s).
    breaker_failure_threshold: int = Field(
        5, ge=0, description="consecutive failures that open a service's circuit; 0: never"
    )
    breaker_cooldown: float = Field(
        5.0, gt=0, description="seconds an open circuit skips its service before one trial call"
    )
    # The proxy learns its row width from its services' model metadata before it serves.
    services_wait: float = Field(
        60, gt=0, description="seconds to wait at start-up for a service to tell its input"
    )
    # The OIP model that fans out to every class service (src/proxy/v2.py).
    ensemble_name: str = Field("iris", min_length=1)
    # The bearer token of the model repository routes, forwarded to the services (which
    # need the same); unset: no such routes.
    admin_token: SecretStr | None = None
    # Comma-separated service names that must answer; empty (the default): all are soft.
    hard_dependencies: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("hard_dependencies", mode="before")
    @classmethod
    def _split_names(cls, value):
        if isinstance(value, str):
            return tuple(name.strip().lower() for name in value.split(",") if name.strip())
        return value

    @field_validator("services", mode="before")
    @classmethod
    def _split_replicas(cls, value):
        if not isinstance(value, dict):
            return value
        return {
            name: tuple(url.strip() for url in urls.split(",") if url.strip())
            if isinstance(urls, str)
            else urls
            for name, urls in value.items()
        }

    @field_validator("backend_timeouts", mode="before")
    @classmethod
    def _split_timeouts(cls, value):
        if not isinstance(value, str):
            return value
        timeouts = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            name, equals, seconds = item.partition("=")
            if not equals or not name.strip():
                raise ValueError(f"expected name=seconds, got {item!r}")
            timeouts[name.strip().lower()] = seconds.strip()
        return timeouts

    @model_validator(mode="after")
    def _known_services(self) -> "ProxySettings":
        for variable, names in (
            ("HARD_DEPENDENCIES", self.hard_dependencies),
            ("BACKEND_TIMEOUTS", tuple(self.backend_timeouts)),
        ):
            unknown = sorted(set(names) - set(self.services))
            if unknown:
                raise ValueError(
                    f"{variable} names {', '.join(unknown)}, not a backend "
                    f"(the backends: {', '.join(self.services)})"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _ServicesFromEnv(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )


class _ServicesFromEnv(EnvSettingsSource):
    """The environment, with every `SERVICE_<NAME>=<base URL>` gathered into `services`."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        prefix = SERVICE_ENV_PREFIX.lower()  # names are matched case-blind, as every setting
        found = {
            key[len(prefix) :].lower(): url
            for key, url in sorted(self.env_vars.items())
            if key.lower().startswith(prefix) and url
        }
        if found:
            values["services"] = found
        return values


DEFAULT_SQLITE_URL = "sqlite:///data/batch.sqlite3"


class DatabaseSettings(CommonSettings):
    """Where the batch pattern's items and predictions live.

    `DATABASE_URL` wins; else MySQL through pymysql when `MYSQL_SERVER` is set; else an
    embedded SQLite file under data/, so the API and the job run with no database server.
    """

    database_url: str | None = None
    mysql_server: str | None = None
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str = ""
    mysql_database: str = "sample_db"
    # 0: an out-of-date schema stops the process at once. Under an orchestrator that starts
    # everything together, the seconds to wait for the migrate one-shot instead.
    migration_wait: float = Field(0, ge=0, description="seconds to wait for the migration")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.mysql_server:
            # Built by SQLAlchemy so a password with "@" or "/" needs no escaping by hand;
            # imported here because the proxy and class services never need SQLAlchemy.
            from sqlalchemy.engine import URL

            return URL.create(
                "mysql+pymysql",
                username=self.mysql_user,
                password=self.mysql_password or None,
                host=self.mysql_server,
                port=self.mysql_port,
                database=self.mysql_database,
                query={"charset": "utf8mb4"},
            ).render_as_string(hide_password=False)
        return DEFAULT_SQLITE_URL


class BatchModelSettings(DatabaseSettings):
    """The batch pattern's model, read by the API and the job alike.

    `<MODEL_REPOSITORY>/<MODEL_NAME>/<version>/model.onnx`, the newest version unless
    MODEL_VERSION pins one; MODEL_FILEPATH names one file instead (version MODEL_VERSION or 1).
    """

    model_repository: Path = MODELS_DIR
    model_name: str = Field("iris", min_length=1)
    model_version: int | None = Field(None, ge=1, description="unset: the newest present")
    model_filepath: Path | None = None
    label_filepath: Path = DEFAULT_LABEL_FILEPATH

    def resolved_model(self) -> tuple[int, Path]:
        """(version, file) of the model; ModelLoadError when the repository lacks it."""
        # Imported here, as SQLAlchemy above: the settings module stays free of the rest.
        from src.ml.repository import resolve_model_file

        return resolve_model_file(
            self.model_repository, self.model_name, self.model_version, self.model_filepath
        )


class ApiSettings(BatchModelSettings):
    """The batch API: registers items, serves their predictions once the job has run.

    It reads the job's model for its row width and class count, never scores with it.
    """

    process_name: ClassVar[str] = "batch API"

    port: int = 8000
    idempotency_ttl_seconds: float = Field(
        86_400, gt=0, description="seconds an Idempotency-Key answers with its first ids"
    )
    # Unset: POST /predict never refuses for load, as before.
    max_backlog: int | None = Field(
        None, ge=0, description="unscored items past which POST /predict answers 503"
    )
    backlog_retry_after_seconds: int = Field(
        60, ge=1, description="the Retry-After of that 503: about one BATCH_WAIT_TIME"
    )


class JobSettings(BatchModelSettings):
    """The batch job: scores every unscored item every `BATCH_WAIT_TIME` seconds."""

    batch_wait_time: float = Field(60, ge=0, description="seconds between two passes")
    worker_threads: int = Field(4, ge=1)
    chunk_size: int = Field(5000, ge=1, description="items claimed, scored and written at once")
    # 0 turns the metrics server off (short `--once` runs that nobody scrapes, tests).
    metrics_port: int = Field(9200, ge=0)
    # Backoff between attempts while the database is unreachable grows up to this.
    db_retry_max_wait: float = Field(30, gt=0)
    # Unset: every item and prediction is kept, as before.
    retention_seconds: float | None = Field(
        None, gt=0, description="scored items older than this are deleted between passes"
    )
    # True: every pass also scores again the predictions of older model versions.
    rescore: bool = Field(
        False, description="rescore predictions made by an older model version after each pass"
    )
