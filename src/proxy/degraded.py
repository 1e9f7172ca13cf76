"""Answers given without every class service: counted so an alert can see them."""

from prometheus_client import Counter

DEGRADED_ANSWERS = Counter(
    "proxy_degraded_answers_total",
    "Successful answers that lack at least one class service's part",
    # keyed: /predict and its tests (one entry per service); label: /predict/label;
    # ensemble: the v2 ensemble model.
    ["answer"],
)


def count_if_degraded(answer: str, unavailable) -> None:
    """Count one degraded answer of kind `answer` when any service is in `unavailable`."""
    if unavailable:
        DEGRADED_ANSWERS.labels(answer).inc()
