"""Compose's variable substitution (`${NAME:-default}` and the rest), done the way Compose does.

The one expander of the suite: `make run` (scripts/run_suite.py) reads docker-compose.yml
through it, and the deployment tests check the file with it.
"""

import re
from collections.abc import Mapping
from typing import Any

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}, ${NAME:+alt}, $NAME, $$
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^${}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution of one string, with `env` as the environment."""

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in ("-", ":-"):
            return arg if unset else current
        if op in ("?", ":?"):
            if unset:
                raise ValueError(f"required variable {name} is not set: {arg}")
            return current
        if op in ("+", ":+"):
            return "" if unset else arg
        return current or ""

    result = _INTERPOLATION.sub(substitute, value)
    if "${" in result:
        raise ValueError(f"unsupported interpolation (nested?) in {value!r}")
    return result


def interpolate_all(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_all(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_all(value, env) for key, value in node.items()}
    return node


def variables_used(node: Any) -> dict[str, set[str | None]]:
    """Every variable a (raw) compose document interpolates, with the defaults it gives."""
    found: dict[str, set[str | None]] = {}
    if isinstance(node, str):
        for match in _INTERPOLATION.finditer(node):
            name = match["name"] or match["bare"]
            if name:
                default = match["arg"] if match["op"] in ("-", ":-") else None
                found.setdefault(name, set()).add(default)
    elif isinstance(node, list | dict):
        for item in node.values() if isinstance(node, dict) else node:
            for name, defaults in variables_used(item).items():
                found.setdefault(name, set()).update(defaults)
    return found
