"""The proxy's 503: which services failed and why, in the one error shape (src/web.py)."""

from fastapi.responses import JSONResponse
from prometheus_client import Counter

from src.proxy.backends import BackendResult, Backends
from src.web import error_response

# A service that answered, but whose answer cannot be used for this request.
NOT_EVERY_ROW = "its answer did not cover every row of the request"

FAILED = Counter(
    "proxy_failed_answers_total", "503 answers: every service, or a required one, failed"
)


def failures(
    results: dict[str, BackendResult], answered: set[str], unusable: str = NOT_EVERY_ROW
) -> dict[str, dict[str, str]]:
    """Why each service outside `answered` failed (`unusable` for one that did answer)."""
    return {
        name: result.as_error_entry()
        if not result.ok
        else {"error": "bad_response", "detail": unusable}
        for name, result in results.items()
        if name not in answered
    }


def services_failed(
    error: str,
    results: dict[str, BackendResult],
    answered: set[str] | None = None,
    *,
    required: list[str] | None = None,
    unusable: str = NOT_EVERY_ROW,
) -> JSONResponse:
    """503 listing only the services that failed; with `required`, the hard ones among them."""
    FAILED.inc()
    failed = failures(results, answered or set(), unusable)
    return error_response(
        503,
        error,
        services=failed,
        required=required,
        unavailable=list(failed) if required is not None else None,
    )


def required_failed(
    backends: Backends, results: dict[str, BackendResult], answered: set[str]
) -> JSONResponse | None:
    """503 naming the hard dependencies (HARD_DEPENDENCIES) that did not answer, if any."""
    missing = backends.missing_required(answered)
    if not missing:
        return None
    return services_failed(
        f"required service failed: {', '.join(missing)}", results, answered, required=missing
    )
