"""Print docker-compose.yml with docker-stack.yml over it, as `docker stack deploy` reads it.

    python scripts/stack_file.py [--env-file FILE] > stack.json
    docker stack deploy --resolve-image never -c stack.json <stack name>

`docker compose config` does the merging and the ${VARIABLE} substitution (with the same
defaults and env file as `docker compose up`); what is left is the part of the Compose
specification that the stack loader of the Docker CLI reads differently: it wants
published ports as numbers and CPU limits as strings, and has no `build`, `depends_on`,
`restart` or project `name` (stack deploy names networks and volumes after the stack
itself). JSON is YAML, so the output is a valid stack file.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = (REPO_ROOT / "docker-compose.yml", REPO_ROOT / "docker-stack.yml")
# Compose-only keys: the stack loader rejects or ignores them.
COMPOSE_ONLY_KEYS = ("build", "depends_on", "restart", "pull_policy")
# The newest format the stack loaders of Docker CLI 20.10 and later all read.
STACK_FILE_VERSION = "3.8"


def stack_config(compose_config: dict) -> dict:
    """The merged Compose model as the stack loader takes it."""
    # Named: older Docker CLIs (Debian's 20.10) take a file without a version for 1.0.
    stack = {"version": STACK_FILE_VERSION}
    stack.update((key, value) for key, value in compose_config.items() if key != "name")
    for service in stack.get("services", {}).values():
        for key in COMPOSE_ONLY_KEYS:
            service.pop(key, None)
        # Keys a `!reset` emptied come out as null, which the stack loader rejects.
        for key in [key for key, value in service.items() if value is None]:
            del service[key]
        for port in service.get("ports", []):
            if "published" in port:
                port["published"] = int(port["published"])
        for limits in (service.get("deploy", {}).get("resources") or {}).values():
            if "cpus" in limits:
                limits["cpus"] = str(limits["cpus"])
    for section in ("networks", "volumes"):
        for definition in (stack.get(section) or {}).values():
            # The project's names; a stack prefixes its own name instead.
            if isinstance(definition, dict):
                definition.pop("name", None)
    return stack


def compose_config(env_file: Path | None, env: dict[str, str] | None = None) -> dict:
    command = ["docker", "compose"]
    for path in COMPOSE_FILES:
        command += ["--file", str(path)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    command += ["config", "--format", "json"]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=60
    )
    if result.returncode != 0:
        raise SystemExit(f"docker compose config failed:\n{result.stderr}")
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, help="variables, as for `docker compose`")
    args = parser.parse_args(argv)
    json.dump(stack_config(compose_config(args.env_file)), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
