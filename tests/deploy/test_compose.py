"""docker-compose.yml (and its .env.example and Prometheus config), checked without Docker."""

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.deploy.deployment import (
    COMPOSE_FILE,
    REPO_ROOT,
    built_services,
    compose,
    http_services,
    module_path,
    python_module,
    raw_compose,
    required_env_names,
    settings_class,
    settings_env_names,
    unread_env_names,
)
from tests.deploy.healthcheck import assert_checks_health
from tooling.compose_variables import interpolate, interpolate_all, variables_used

EXPECTED_SERVICES = {
    "mysql",
    "migrate",
    "api",
    "job",
    "proxy",
    "service_setosa",
    "service_versicolor",
    "service_virginica",
}
EXPECTED_PORTS = {
    "api": 8000,
    "proxy": 9100,
    "service_setosa": 9101,
    "service_versicolor": 9102,
    "service_virginica": 9103,
}
EXPECTED_HEALTHY_DEPENDENCIES = {
    "migrate": {"mysql"},
    "api": {"mysql"},
    "job": {"mysql"},
    "proxy": {"service_setosa", "service_versicolor", "service_virginica"},
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
WHOLE_INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?][^}]*)?\}")


def services() -> dict[str, dict]:
    return compose()["services"]


def compose_spec_problems(path) -> str:
    """check-jsonschema's complaints about `path` against the compose-spec schema; offline."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "" if result.returncode == 0 else result.stdout


def test_compose_file_is_valid_against_the_compose_spec_schema():
    problems = compose_spec_problems(str(COMPOSE_FILE))
    assert not problems, f"docker-compose.yml is not valid Compose:\n{problems}"


# Run to completion before the services that depend on them (service_completed_successfully).
ONE_SHOT_SERVICES = {"migrate"}


def test_the_eight_services_of_the_suite():
    default_services = {name for name, spec in services().items() if not spec.get("profiles")}
    assert default_services == EXPECTED_SERVICES


def test_mysql_has_a_named_volume_utf8mb4_without_a_collation_and_a_ping_healthcheck():
    mysql = services()["mysql"]
    assert mysql["image"].startswith("mysql:8.0")
    command = " ".join(mysql["command"])
    assert "--character-set-server=utf8mb4" in command
    # MySQL 8's default collation is utf8mb4_0900_ai_ci, which MariaDB lacks: the file
    # must not name it, so the same command runs on both.
    assert "--collation-server" not in command
    sources = [volume.split(":")[0] for volume in mysql["volumes"]]
    assert any(source in (compose().get("volumes") or {}) for source in sources), (
        f"mysql keeps its data in a named volume, got {mysql['volumes']}"
    )
    assert "mysqladmin" in mysql["healthcheck"]["test"] and "ping" in mysql["healthcheck"]["test"]


def test_volumes_are_declared_or_bind_mount_existing_files():
    declared = compose().get("volumes") or {}
    for name, spec in services().items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses volume {source}, not in `volumes:`"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - ONE_SHOT_SERVICES))
def test_every_service_restarts(name):
    restart = services()[name].get("restart")
    assert restart in ("always", "unless-stopped", "on-failure"), (
        f"{name}: set a restart policy (got {restart!r})"
    )


def test_migrate_upgrades_the_schema_once_before_the_api_and_the_job_start():
    migrate = services()["migrate"]
    # Not restarted: a failed upgrade stays failed, for a human to read, and keeps the
    # api and the job from starting on a schema they do not know.
    assert migrate["restart"] == "no"
    assert "ports" not in migrate and "healthcheck" not in migrate
    assert python_module(migrate["command"]) == "src.db"
    assert migrate["command"][3:] == ["upgrade"]
    assert module_path("src.db")
    # The api's image, so the schema it upgrades to is the one the api needs.
    assert migrate["image"] == built_services()["api"]["image"]
    for name in ("api", "job"):
        depends_on = services()[name]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}, name
        # The same database settings as the processes that then use it.
        database_keys = {key for key in migrate["environment"] if key.startswith("MYSQL_")}
        assert database_keys and all(
            services()[name]["environment"][key] == migrate["environment"][key]
            for key in database_keys
        ), name
    settings = settings_class("migrate")
    assert not unread_env_names(settings, set(migrate["environment"]))


@pytest.mark.parametrize("name", sorted(EXPECTED_PORTS))
def test_published_port_is_the_port_the_process_listens_on(name):
    spec = services()[name]
    port = int(spec["environment"]["PORT"])
    assert port == EXPECTED_PORTS[name]
    assert spec["ports"] == [f"{port}:{port}"], (
        f"{name}: publish PORT as host:container ({port}:{port}), got {spec['ports']}"
    )
    # Moving the port through its variable must move host port, container port and PORT.
    raw = raw_compose()["services"][name]
    moved = {variable: "12345" for variable in variables_used(raw["environment"]["PORT"])}
    assert moved, f"{name}: PORT should come from a variable, got {raw['environment']['PORT']}"
    assert interpolate_all(raw["ports"], moved) == ["12345:12345"], (
        f"{name}: with {moved} the ports would be {interpolate_all(raw['ports'], moved)}"
    )
    assert interpolate(raw["environment"]["PORT"], moved) == "12345"


@pytest.mark.parametrize("name", sorted(EXPECTED_PORTS))
def test_every_http_service_has_a_healthcheck_on_health(name):
    healthcheck = services()[name].get("healthcheck")
    assert healthcheck, f"{name} serves HTTP and needs a healthcheck"
    test = healthcheck["test"]
    assert isinstance(test, list) and test[0] == "CMD", (
        f'{name}: use the exec form ["CMD", ...]: the slim images have no shell tools to rely on'
    )
    assert_checks_health(test[1:], f"compose service {name}")


@pytest.mark.parametrize("name", sorted(EXPECTED_HEALTHY_DEPENDENCIES))
def test_depends_on_waits_for_healthy_services(name):
    depends_on = services()[name].get("depends_on")
    assert isinstance(depends_on, dict), f"{name}: depends_on with conditions, got {depends_on}"
    healthy = {
        dep for dep, spec in depends_on.items() if spec.get("condition") == "service_healthy"
    }
    assert healthy == EXPECTED_HEALTHY_DEPENDENCIES[name]
    for dependency in healthy:
        assert services()[dependency].get("healthcheck"), (
            f"{name} waits for {dependency} to be healthy, but {dependency} has no healthcheck"
        )


@pytest.mark.parametrize("name", sorted(built_services()))
def test_command_is_exec_form_and_names_an_existing_module(name):
    command = built_services()[name]["command"]
    module = python_module(command)
    assert module_path(module), f"{name} runs `python -m {module}`, which has no file in src/"


@pytest.mark.parametrize("name", sorted(built_services()))
def test_built_services_name_their_images_for_a_registry(name):
    image = built_services()[name].get("image", "")
    assert re.fullmatch(r"ml-serving-patterns/[a-z]+:latest", image), (
        f"{name}: tag the built image as ml-serving-patterns/<name>:latest (overridable by "
        f"IMAGE_REGISTRY / IMAGE_TAG) so k8s/ can use it, got {image!r}"
    )


def test_environment_is_a_mapping_and_credentials_come_from_variables():
    for name, spec in raw_compose()["services"].items():
        environment = spec.get("environment", {})
        assert isinstance(environment, dict), f"{name}: write `environment` as a mapping"
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert isinstance(value, str) and WHOLE_INTERPOLATION.fullmatch(value), (
                    f"{name}: {key} must come from a variable (${{{key}:-...}}), got {value!r}"
                )


@pytest.mark.parametrize("name", sorted(built_services()))
def test_every_variable_compose_sets_is_read_by_the_service(name):
    cls = settings_class(name)
    environment = built_services()[name]["environment"]
    unread = unread_env_names(cls, set(environment))
    assert not unread, (
        f"compose sets {sorted(unread)} for {name}, but {cls.__name__} reads none of them "
        f"(it reads {sorted(settings_env_names(cls))})"
    )
    missing = required_env_names(cls) - set(environment)
    assert not missing, f"{cls.__name__} has no default for {sorted(missing)}; compose must set it"


@pytest.mark.parametrize("name", sorted(built_services()))
def test_settings_accept_the_compose_environment(name, monkeypatch):
    cls = settings_class(name)
    environment = built_services()[name]["environment"]
    for variable in settings_env_names(cls) | {"MODE", "PORT"}:
        monkeypatch.delenv(variable, raising=False)
    for variable in [key for key in os.environ if key.startswith("SERVICE_")]:
        monkeypatch.delenv(variable)
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    settings = cls()
    if "PORT" in environment:
        assert settings.port == int(environment["PORT"])
    if "MODE" in environment:
        assert settings.mode == environment["MODE"]


def test_proxy_reaches_each_class_service_by_its_compose_name_and_port():
    environment = services()["proxy"]["environment"]
    backends = {key: value for key, value in environment.items() if key.startswith("SERVICE_")}
    expected = {
        f"SERVICE_{name.removeprefix('service_').upper()}": f"http://{name}:{port}"
        for name, port in EXPECTED_PORTS.items()
        if name.startswith("service_")
    }
    assert backends == expected


def test_env_example_lists_every_compose_variable_with_its_default():
    example = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    used = variables_used(raw_compose())
    assert set(example) == set(used), (
        f"only in docker-compose.yml: {sorted(set(used) - set(example))}; "
        f"only in .env.example: {sorted(set(example) - set(used))}"
    )
    for variable, defaults in used.items():
        assert len(defaults) == 1, f"${{{variable}}} has different defaults: {defaults}"
        (default,) = defaults
        if not SECRET_NAME.search(variable):
            assert example[variable] == default, (
                f".env.example sets {variable}={example[variable]}, compose defaults to {default}"
            )


def test_prometheus_scrapes_every_process_of_the_suite():
    prometheus = services().get("prometheus")
    assert prometheus and prometheus.get("profiles") == ["monitoring"]
    config = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]:
            targets.update(static["targets"])
    expected = {f"{name}:{port}" for name, port in EXPECTED_PORTS.items()}
    expected.add(f"job:{built_services()['job']['environment']['METRICS_PORT']}")
    assert targets == expected
    assert set(http_services()) | {"job"} == set(built_services())


WINE_COMPOSE_FILE = REPO_ROOT / "docker-compose.wine.yml"


def test_the_wine_compose_file_is_valid_compose_and_every_variable_is_read():
    """docs/your-model.md's complete compose file for a second model set."""
    assert not compose_spec_problems(str(WINE_COMPOSE_FILE))
    wine = yaml.safe_load(WINE_COMPOSE_FILE.read_text())["services"]
    ours = {name: service for name, service in wine.items() if "build" in service}
    assert set(ours) == {
        "api",
        "job",
        "proxy",
        "service_class_0",
        "service_class_1",
        "service_class_2",
    }
    for name, service in ours.items():
        cls = settings_class(name if name in services() else "service_setosa")
        unread = unread_env_names(cls, set(service["environment"]))
        assert not unread, f"{name}: {cls.__name__} reads none of {sorted(unread)}"
