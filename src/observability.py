"""Logging, request ids and Prometheus metrics shared by every process."""

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import Counter, Histogram

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
# A caller's id is logged and forwarded, so only short, plain ids are trusted.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes hit these every few seconds; logging them at INFO would drown real traffic.
_QUIET_PATHS = frozenset({"/health", "/metrics"})

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
logger = logging.getLogger("src.access")

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id and any `extra=` fields."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Send every logger (ours and uvicorn's) to stderr in one format; safe to call twice."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # RequestContextMiddleware logs each request once, with its id; uvicorn's line would repeat it.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False


def new_request_id() -> str:
    return uuid.uuid4().hex


def _incoming_request_id(scope: dict) -> str:
    for key, value in scope["headers"]:
        if key == _REQUEST_ID_HEADER_KEY:
            candidate = value.decode("latin-1")
            if _SAFE_REQUEST_ID.fullmatch(candidate):
                return candidate
    if scope.get("query_string"):
        # The original pattern traced requests with an `id` query parameter.
        ids = parse_qs(scope["query_string"].decode("latin-1")).get("id", [])
        if ids and _SAFE_REQUEST_ID.fullmatch(ids[0]):
            return ids[0]
    return new_request_id()


class RequestContextMiddleware:
    """Per request: take or make the request id, echo it, log one line, count and time it.

    A plain ASGI middleware rather than BaseHTTPMiddleware: it sits on every request's
    hot path, and it must see the status even when the app raises.
    """

    def __init__(self, app) -> None:
        self.app = app
        # Each (route, method, status)'s counter and histogram, looked up once: labels()
        # takes a lock and builds its key on every call.
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _metrics_of(self, route_path: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route_path, method, status)
        metrics = self._metrics.get(key)
        if metrics is None:
            metrics = (
                HTTP_REQUESTS.labels(route_path, method, str(status)),
                HTTP_LATENCY.labels(route_path, method),
            )
            self._metrics[key] = metrics
        return metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_request_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_REQUEST_ID_HEADER_KEY, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            method = scope["method"]
            requests, latency = self._metrics_of(route_path, method, status)
            requests.inc()
            latency.observe(elapsed)
            level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
            logger.log(
                level,
                "%s %s %d %.1fms",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)
