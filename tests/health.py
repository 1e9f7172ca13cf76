"""What a healthy class service's entry in the proxy's /health/all looks like."""


def healthy_entry(name: str, features: int = 4, version: str = "1") -> dict:
    """A class service that answered its /health, serving `version` of its model."""
    return {
        "health": "ok",
        "model": name,
        "features": features,
        "model_version": version,
        "circuit": "closed",
    }
