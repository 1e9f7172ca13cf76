"""Readers for the deployment files, shared by the static deployment tests.

Nothing here runs Docker or a cluster: files are parsed, interpolated the way Compose
does it, and compared with the code they start.
"""

import shutil
import sys
from functools import cache
from pathlib import Path

import yaml
from pydantic import AliasChoices

from tooling.compose_variables import interpolate_all

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
K8S_DIR = REPO_ROOT / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
DOCKERFILES = sorted(REPO_ROOT.glob("Dockerfile.*"))

# Compose service -> the settings class in src/settings.py its process reads.
SETTINGS_CLASS_NAMES = {
    "proxy": "ProxySettings",
    "service_setosa": "ServiceSettings",
    "service_versicolor": "ServiceSettings",
    "service_virginica": "ServiceSettings",
    "api": "ApiSettings",
    "job": "JobSettings",
    "migrate": "DatabaseSettings",
}
# Settings classes that also read every variable with this prefix (see ProxySettings).
EXTRA_ENV_PREFIXES = {"ProxySettings": "SERVICE_"}


@cache
def raw_compose() -> dict:
    """docker-compose.yml as written (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@cache
def compose() -> dict:
    """docker-compose.yml as `docker compose up` with no variables set would see it."""
    return interpolate_all(raw_compose(), {})


def built_services() -> dict[str, dict]:
    """The services built from this repo's Dockerfiles (mysql and prometheus are images)."""
    return {name: spec for name, spec in compose()["services"].items() if "build" in spec}


def http_services() -> dict[str, dict]:
    """Built services that serve HTTP on their PORT."""
    return {name: spec for name, spec in built_services().items() if "PORT" in spec["environment"]}


def module_path(module: str) -> Path | None:
    """The file `python -m module` would run, or None when there is none."""
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base / "__main__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def python_module(command: list[str]) -> str:
    """The module of an exec-form `python -m module ...` command; fails on anything else."""
    assert isinstance(command, list) and command[:2] == ["python", "-m"] and len(command) > 2, (
        f"expected an exec-form ['python', '-m', module, ...] command, got {command!r}"
    )
    return command[2]


def settings_class(compose_service: str):
    """The settings class of a compose service; a clear failure while it is not written."""
    import src.settings

    class_name = SETTINGS_CLASS_NAMES[compose_service]
    cls = getattr(src.settings, class_name, None)
    assert cls is not None, (
        f"src/settings.py has no {class_name} yet, the settings class of compose service "
        f"{compose_service!r}"
    )
    return cls


def settings_env_names(cls) -> set[str]:
    """Upper-cased environment variable names a pydantic-settings class reads."""
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(choice.upper() for choice in alias.choices if isinstance(choice, str))
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def required_env_names(cls) -> set[str]:
    """Variables of the settings fields that have no default."""
    prefix = cls.model_config.get("env_prefix", "")
    return {
        f"{prefix}{name}".upper() for name, field in cls.model_fields.items() if field.is_required()
    }


def unread_env_names(cls, names: set[str]) -> set[str]:
    """The names among `names` that the settings class does not read."""
    read = settings_env_names(cls)
    prefix = EXTRA_ENV_PREFIXES.get(cls.__name__)
    return {
        name
        for name in names
        if name.upper() not in read and not (prefix and name.upper().startswith(prefix))
    }


def find_tool(name: str) -> Path | None:
    """A console script of this venv first (the pinned one), then one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def k8s_manifest_files() -> list[Path]:
    return sorted(path for path in K8S_DIR.glob("*.yaml") if path != KUSTOMIZATION)


@cache
def k8s_resources() -> list[dict]:
    """Every Kubernetes resource of k8s/, each with `_file` (its manifest's name) added."""
    resources = []
    for path in k8s_manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                resources.append({**document, "_file": path.name})
    return resources


def k8s_resource(kind: str, name: str) -> dict:
    matches = [r for r in k8s_resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r} in k8s/, found {len(matches)}"
    return matches[0]


def without_file(resource: dict) -> dict:
    return {key: value for key, value in resource.items() if key != "_file"}


def pod_spec(workload: dict) -> dict:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


def container_env(container: dict) -> dict[str, str]:
    """A container's environment, ConfigMaps resolved; secret values become a placeholder."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, (
            f"container {container['name']}: envFrom only with ConfigMaps, so every "
            f"variable name is visible in k8s/ (use secretKeyRef for secrets): {source}"
        )
        config_map = k8s_resource("ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "configMapKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["configMapKeyRef"]
            data = k8s_resource("ConfigMap", ref["name"])["data"]
            assert ref["key"] in data, f"ConfigMap {ref['name']} has no key {ref['key']}"
            env[entry["name"]] = data[ref["key"]]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[entry["name"]] = "from-a-secret"
        else:
            raise AssertionError(f"unsupported env entry in {container['name']}: {entry}")
    return env
