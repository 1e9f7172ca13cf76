"""Make sure the base images the Dockerfiles and the compose file name exist locally.

`python -m scripts.base_images` (or `make base-images`): for each of python:3.11-slim-bookworm,
mysql:8.0 and the monitoring profile's prom/prometheus, use the local image if there is
one, else `docker pull` it, and only when the pull fails (no registry reachable) build a
STAND-IN under the same name:

- python:3.11-slim-bookworm: a Debian bookworm root filesystem made with
  `debootstrap --variant=minbase` from the mirror apt already uses, with python3, pip,
  venv and the CA certificates (this machine's bundle too, so pip inside a build reaches
  PyPI as it does here), `python`/`pip` on PATH, imported with `docker import`;
- mysql:8.0: MariaDB 10.11 from Debian's packages on that image, with an entrypoint that
  creates the database and user from MYSQL_* on first start (scripts/standins/);
- prom/prometheus: Prometheus 2 from Debian's package on that image, started like the
  official image (scripts/standins/prometheus.Dockerfile).

Stand-ins carry the label `ml-serving-patterns.standin`, and this script says loudly
when it builds or uses one. The Dockerfiles and docker-compose.yml are left as users run
them with the official images. Needs root (debootstrap) and a Docker engine.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STANDIN_DIR = Path(__file__).resolve().parent / "standins"
STANDIN_LABEL = "ml-serving-patterns.standin"
PYTHON_IMAGE = "python:3.11-slim-bookworm"
MYSQL_IMAGE = "mysql:8.0"
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
# What the official image sets that a bare `docker import` would not.
PYTHON_IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
    f'LABEL {STANDIN_LABEL}="{PYTHON_IMAGE}"',
]


def say(message: str) -> None:
    print(f"base_images: {message}", flush=True)


def docker(*args: str, check: bool = True, **options) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, text=True, **options)


def image_labels(image: str) -> dict[str, str] | None:
    """The image's labels, or None when there is no such image locally."""
    result = docker(
        "image", "inspect", "--format", "{{json .Config.Labels}}", image,
        check=False, capture_output=True,
    )  # fmt: skip
    if result.returncode != 0:
        return None
    return json.loads(result.stdout) or {}


def apt_mirror() -> str:
    """The Debian mirror of this machine's apt sources (deb822 or one-line format)."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        for match in re.finditer(r"^URIs:\s*(\S+)", text, re.MULTILINE):
            if not match[1].rstrip("/").endswith("-security"):
                return match[1]
        for match in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.MULTILINE):
            return match[1]
    return DEFAULT_MIRROR


def build_python_standin(workdir: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise SystemExit("base_images: debootstrap is missing: apt-get install debootstrap")
    rootfs = workdir / "rootfs"
    mirror = apt_mirror()
    say(f"debootstrap bookworm (minbase) from {mirror} into {rootfs}")
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-pip,python3-venv,ca-certificates,passwd",
            "bookworm",
            str(rootfs),
            mirror,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # This machine's CAs, so a build's pip trusts what the host's pip trusts.
    if HOST_EXTRA_CAS.is_dir():
        for certificate in HOST_EXTRA_CAS.glob("*.crt"):
            shutil.copy(certificate, rootfs / "usr/local/share/ca-certificates" / certificate.name)
    if HOST_CA_BUNDLE.is_file():
        shutil.copy(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    # As in the official image: `python` and `pip` on PATH, pip free to install system-wide.
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        (rootfs / "usr/local/bin" / name).symlink_to(target)
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    for lists in (rootfs / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    say(f"docker import as {PYTHON_IMAGE}")
    changes = [arg for change in PYTHON_IMAGE_CHANGES for arg in ("--change", change)]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    docker("import", *changes, "-", PYTHON_IMAGE, stdin=tar.stdout, stdout=subprocess.DEVNULL)
    if tar.wait() != 0:
        raise SystemExit("base_images: tar of the root filesystem failed")


def build_standin(image: str, dockerfile: str) -> None:
    say(f"docker build of {dockerfile} as {image}")
    docker(
        "build", "--quiet", "--tag", image,
        "--file", str(STANDIN_DIR / dockerfile), str(STANDIN_DIR),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def ensure(image: str, build) -> bool:
    """True when `image` is a stand-in (built now or before), False for the real one."""
    labels = image_labels(image)
    if labels is None:
        say(f"{image}: not here, pulling")
        if docker("pull", "--quiet", image, check=False, capture_output=True).returncode == 0:
            labels = image_labels(image) or {}
        else:
            say(f"{image}: the pull failed (no registry reachable?); building a STAND-IN")
            build()
            labels = image_labels(image) or {}
    standin = STANDIN_LABEL in labels
    if standin:
        say(f"{image}: USING A STAND-IN built here ({labels[STANDIN_LABEL]}), not the official one")
    else:
        say(f"{image}: the official image")
    return standin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="base-images-") as workdir:
        ensure(PYTHON_IMAGE, lambda: build_python_standin(Path(workdir)))
    # Built from the python image (stand-in or official): both are Debian bookworm.
    ensure(MYSQL_IMAGE, lambda: build_standin(MYSQL_IMAGE, "mysql.Dockerfile"))
    ensure(PROMETHEUS_IMAGE, lambda: build_standin(PROMETHEUS_IMAGE, "prometheus.Dockerfile"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
