"""Time `docker compose up --build --wait` from an empty build cache and from a warm one.

Run: `make bench-compose`. Uses a project of its own (free ports, its own image tag), so
nothing of a running stack is touched; removes that project's images and the engine's
build cache first (base images stay), then prints both times and each image's size,
and whether the base images are the official ones or stand-ins (scripts/base_images.py).
"""

import argparse
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.base_images import (
    MYSQL_IMAGE,
    PYTHON_IMAGE,
    STANDIN_LABEL,
    image_labels,
)
from tooling.compose_project import (
    ComposeProject,
    docker_config_with_compose,
    docker_engine_problem,
    project_settings,
)

IMAGE_TAG = "compose-bench"
IMAGES = ("api", "job", "proxy", "service")


def image_size_mb(project: ComposeProject, image: str) -> float:
    return int(project.docker("image", "inspect", "--format", "{{.Size}}", image)) / 1e6


def base_image_kind(image: str) -> str:
    return "STAND-IN" if STANDIN_LABEL in (image_labels(image) or {}) else "official"


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if problem := docker_engine_problem():
        print(f"bench_compose: {problem}")
        return 1
    subprocess.run([sys.executable, "-m", "scripts.base_images"], check=True)
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as directory:
        settings = {**project_settings(), "IMAGE_TAG": IMAGE_TAG}
        env_file = Path(directory) / "bench.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        project = ComposeProject(
            f"mlsp-bench-{secrets.token_hex(3)}",
            env_file,
            docker_config_with_compose(Path(directory) / "docker-config"),
            settings,
        )
        images = [f"ml-serving-patterns/{name}:{IMAGE_TAG}" for name in IMAGES]
        project.docker("image", "rm", "--force", *images, check=False)
        project.docker("builder", "prune", "--all", "--force")
        try:
            cold = project.up("--build")
            project.compose("down", "--timeout", "10")
            warm = project.up("--build")
        finally:
            project.compose("down", "--volumes", "--timeout", "10", check=False)
        print()
        for base in (PYTHON_IMAGE, MYSQL_IMAGE):
            size = image_size_mb(project, base)
            print(f"base image {base}: {base_image_kind(base)}, {size:.0f} MB")
        print(f"`docker compose up --build --wait`, empty build cache: {cold:.1f} s")
        print(f"`docker compose up --build --wait`, warm build cache:  {warm:.1f} s")
        for image in images:
            print(f"image {image}: {image_size_mb(project, image):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
