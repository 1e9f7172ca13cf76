"""Start-up errors, told as one clear line instead of a traceback.

Imported by `db`, `ml` and every process, so it imports neither ONNX Runtime nor the database.
"""

import sys
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

T = TypeVar("T")


class ModelLoadError(RuntimeError):
    """The model or label file is missing or unusable; raised at start-up, never per request."""


class StartupError(RuntimeError):
    """A condition a process cannot start under, told in one line (e.g. an old schema)."""


def or_exit(process: str, build: Callable[[], T]) -> T:
    """Run a start-up step; on a settings, model or start-up error print one line and exit 2."""
    try:
        return build()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']).upper() or 'settings'}: {item['msg']}"
            for item in error.errors()
        )
        message = f"invalid settings: {problems}"
    except (ModelLoadError, StartupError) as error:
        message = str(error)
    print(f"{process}: cannot start: {message}", file=sys.stderr)
    raise SystemExit(2)
