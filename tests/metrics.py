"""Read one sample from a process's Prometheus /metrics page."""

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metric_value(base_url: str, sample_name: str, **labels: str) -> float:
    """The sample's value, or 0.0 when it has not been recorded yet."""
    text = httpx.get(base_url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(key) == value for key, value in labels.items()
            ):
                return sample.value
    return 0.0
