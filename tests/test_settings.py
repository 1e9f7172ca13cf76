"""The proxy's resilience settings as read from the environment."""

import os

import pytest
from pydantic import ValidationError

from src.settings import ProxySettings

BACKENDS = {
    "SERVICE_SETOSA": "http://127.0.0.1:9101",
    "SERVICE_VIRGINICA": "http://127.0.0.1:9103",
}


@pytest.fixture
def proxy_env(monkeypatch):
    for name in (
        "BACKEND_TIMEOUTS",
        "HARD_DEPENDENCIES",
        "BREAKER_FAILURE_THRESHOLD",
        "BREAKER_COOLDOWN",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in [key for key in os.environ if key.startswith("SERVICE_")]:
        monkeypatch.delenv(name)
    for name, value in BACKENDS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults_are_all_soft_and_no_override(proxy_env):
    defaults = {name: field.default for name, field in ProxySettings.model_fields.items()}
    assert defaults["breaker_failure_threshold"] == 5
    assert defaults["breaker_cooldown"] == 5.0
    assert defaults["hard_dependencies"] == ()
    settings = ProxySettings()
    assert settings.backend_timeouts == {}


def test_lists_are_comma_separated_and_case_blind(proxy_env):
    proxy_env.setenv("HARD_DEPENDENCIES", " Virginica, setosa ,")
    proxy_env.setenv("BACKEND_TIMEOUTS", "VIRGINICA=5, setosa=0.25")
    settings = ProxySettings()
    assert settings.hard_dependencies == ("virginica", "setosa")
    assert settings.backend_timeouts == {"virginica": 5.0, "setosa": 0.25}


def test_empty_variables_mean_the_defaults(proxy_env):
    proxy_env.setenv("HARD_DEPENDENCIES", "")
    proxy_env.setenv("BACKEND_TIMEOUTS", "")
    settings = ProxySettings()
    assert settings.hard_dependencies == ()
    assert settings.backend_timeouts == {}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BACKEND_TIMEOUTS", "virginica", "expected name=seconds, got 'virginica'"),
        ("BACKEND_TIMEOUTS", "virginica=soon", "valid number"),
        ("BACKEND_TIMEOUTS", "virginica=0", "greater than 0"),
        ("BACKEND_TIMEOUTS", "versicolor=1", "BACKEND_TIMEOUTS names versicolor, not a backend"),
        ("HARD_DEPENDENCIES", "setosa,nope", "HARD_DEPENDENCIES names nope, not a backend"),
        ("BREAKER_FAILURE_THRESHOLD", "-1", "greater than or equal to 0"),
        ("BREAKER_COOLDOWN", "0", "greater than 0"),
    ],
)
def test_bad_values_are_refused_naming_the_problem(proxy_env, variable, value, message):
    proxy_env.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        ProxySettings()
