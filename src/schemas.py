"""Request and response schemas, and the one rule input rows must follow.

Every process (proxy, class services, batch API) takes `{"data": [[f, ..., f], ...]}`
and applies the same rule: 1..MAX_ROWS rows of exactly F finite numbers, F being the
width of the model served (`request_model` and `row_limit_error`). Valid bodies are
checked faster, by the same rule, in src/bodies.py.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict

# Strict: "5.1" and true are rejected instead of being coerced (ints are fine); NaN and ±Infinity
# (which Python's JSON parser accepts) are rejected by allow_inf_nan=False.
FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]


@dataclass(frozen=True)
class RowSpec:
    """What one request row is for the model a process serves: its width and an example.

    Read from the model file (src/ml/predictor.py), or by the proxy from its services.
    """

    n_features: int
    sample: tuple[float, ...]

    @classmethod
    def of_width(cls, n_features: int, sample: list[float] | None = None) -> "RowSpec":
        """The spec of a model taking `n_features` numbers; zeros when no sample is known."""
        if sample is not None and len(sample) != n_features:
            raise ValueError(
                f"the sample row has {len(sample)} numbers, the model takes {n_features}"
            )
        return cls(n_features, tuple(float(value) for value in sample or [0.0] * n_features))

    @property
    def description(self) -> str:
        return f"rows of {self.n_features} numbers"

    @property
    def structure(self) -> str:
        """The shape of a request's rows as /metadata says it."""
        return f"(N, {self.n_features})"


class PredictRequest(BaseModel):
    """`{"data": [[...], ...]}`; `request_model` gives the class for one model's width."""

    model_config = ConfigDict(extra="forbid")

    data: list[list[FiniteNumber]]

    def as_array(self) -> np.ndarray:
        return np.asarray(self.data, dtype=np.float32)


@lru_cache
def request_model(spec: RowSpec) -> type[PredictRequest]:
    """The request schema of a model taking rows of `spec.n_features` numbers."""
    row = Annotated[
        list[FiniteNumber], Field(min_length=spec.n_features, max_length=spec.n_features)
    ]

    class SizedPredictRequest(PredictRequest):
        __doc__ = f"1..MAX_ROWS {spec.description}."
        model_config = ConfigDict(
            title="PredictRequest",
            json_schema_extra={"examples": [{"data": [list(spec.sample)]}]},
        )

        data: list[row] = Field(min_length=1, description=spec.description)

    return SizedPredictRequest


def row_limit_error(rows: int, max_rows: int) -> str | None:
    """The MAX_ROWS rule, shared by the `{"data": ...}` routes and the Open Inference Protocol's."""
    if rows > max_rows:
        return f"at most {max_rows} rows per request, got {rows}"
    return None


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ServiceFailure(BaseModel):
    error: str = Field(description="timeout, unreachable, bad_status or bad_response")
    detail: str


class ErrorResponse(BaseModel):
    """Every error of every process: `error` names the problem; the rest depends on the case.

    It is also the Open Inference Protocol's error shape (`{"error": "..."}`).
    """

    error: str
    detail: list[ErrorDetail] | None = Field(None, description="422/400: up to 20 problems")
    more_errors: int | None = Field(None, description="problems beyond the listed ones")
    hint: str | None = None
    request_id: str | None = Field(None, description="500 and database errors: the request's id")
    services: dict[str, ServiceFailure] | None = Field(
        None, description="proxy 503: why each service that failed did"
    )
    required: list[str] | None = Field(
        None, description="proxy 503: the hard dependencies (HARD_DEPENDENCIES) that failed"
    )
    unavailable: list[str] | None = Field(None, description="proxy 503: every service that failed")
    health: str | None = Field(None, description="batch API /health 503: `unavailable`")


class HealthResponse(BaseModel):
    health: str = "ok"


class ServiceHealth(HealthResponse):
    """A class service's health, with what the proxy's /health/all compares: the row width."""

    model: str = Field(description="the model served (MODE)")
    features: int = Field(description="numbers per row the model takes")
    model_version: str | None = Field(description="the version served; null once unloaded")


class BinaryPrediction(BaseModel):
    """A class service's answer: `[P(class), P(not class)]` for the first row and for all."""

    prediction: list[float]
    predictions: list[list[float]]
    model_version: str = Field(description="the version of the model that answered")


class LabelledProbability(BaseModel):
    proba: float
    label: str


class LabelPrediction(BaseModel):
    prediction: LabelledProbability
    predictions: list[LabelledProbability]
    unavailable: list[str] = Field(default_factory=list, description="services that failed")
    model_versions: dict[str, str] = Field(
        default_factory=dict, description="the model version of each service that answered"
    )


class RegisteredItems(BaseModel):
    """The batch API's answer to POST /predict: the items are stored, not yet scored."""

    id: int = Field(description="the first item's id")
    ids: list[int] = Field(description="one id per row, in request order")
    submission_id: int = Field(description="follow it at GET /submissions/{submission_id}")


class ItemPrediction(BaseModel):
    """An item's prediction; `prediction` is null until the batch job has scored it."""

    id: int
    prediction: dict[str, float] | None
    label: str | None = None
    model_version: str | None = Field(
        None, description="the version of the model that made the prediction; null until scored"
    )


class ItemRecord(BaseModel):
    id: int
    data: list[float]
    created_at: str
    prediction: dict[str, float] | None = None
    label: str | None = None
    model_version: str | None = Field(
        None, description="the version of the model that made the prediction; null until scored"
    )


class ItemPage(BaseModel):
    items: list[ItemRecord]
    next: int | None = Field(description="pass as after_id for the next page; null on the last")


class SubmissionStatus(BaseModel):
    """One POST /predict's progress, and a page of its items in id order."""

    id: int
    total: int = Field(description="items the POST stored")
    scored: int = Field(description="items scored (including any deleted since by retention)")
    pending: int = Field(description="items not scored yet")
    created_at: str
    completed_at: str | None = Field(description="when the last item was scored; null before")
    items: list[ItemRecord]
    next: int | None = Field(description="pass as after_id for the next page; null on the last")
