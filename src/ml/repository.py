"""A model repository in Triton's and KServe's layout: `<repository>/<model>/<version>/model.onnx`.

Versions are positive integers (folder names); a process serves the highest version
present unless one is pinned. The repository only reads folders: loading a version is
the predictor's job, swapping it in is the process's (src/services/models.py).
"""

from dataclasses import dataclass
from pathlib import Path

from src.errors import ModelLoadError

MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class ModelRepository:
    root: Path

    def model_names(self) -> list[str]:
        """Every model with at least one version folder, by name."""
        if not self.root.is_dir():
            return []
        return sorted(path.name for path in self.root.iterdir() if self.versions(path.name))

    def versions(self, model: str) -> list[int]:
        """The model's versions present (folders named by a positive integer), ascending."""
        folder = self.root / model
        if not folder.is_dir():
            return []
        return sorted(
            int(path.name)
            for path in folder.iterdir()
            if path.is_dir() and path.name.isdigit() and int(path.name) > 0
        )

    def model_path(self, model: str, version: int) -> Path:
        return self.root / model / str(version) / MODEL_FILE

    def resolve(self, model: str, version: int | None = None) -> tuple[int, Path]:
        """(version, file) of `version`, or of the newest when None; ModelLoadError if absent."""
        present = self.versions(model)
        if version is None:
            if not present:
                raise ModelLoadError(
                    f"model repository {self.root}: no version of {model!r} "
                    f"(expected {self.root}/{model}/<version>/{MODEL_FILE})"
                )
            version = present[-1]
        elif version not in present:
            raise ModelLoadError(
                f"model repository {self.root}: {model!r} has no version {version} "
                f"(present: {', '.join(map(str, present)) or 'none'})"
            )
        return version, self.model_path(model, version)


def resolve_model_file(
    repository: Path, model: str, version: int | None, filepath: Path | None
) -> tuple[int, Path]:
    """(version, file) of a process's model: `filepath` when given, else the repository's.

    One file (MODEL_FILEPATH) has one version, `version` or 1; in the repository `version`
    pins one, None takes the newest present. ModelLoadError when it is absent.
    """
    if filepath is not None:
        return version or 1, filepath
    return ModelRepository(repository).resolve(model, version)
