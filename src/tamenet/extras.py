"""Optional dependencies (the extras of pyproject.toml), imported on use with a one-line error when missing."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError, ValueError):
    """An optional package a feature needs is not installed (a ValueError too, so the CLI prints one line)."""


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """`import module`, or a `MissingExtraError` naming the feature and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{feature} needs the package {module.split('.')[0]}, which is not installed: "
                                f"pip install 'tamenet[{extra}]'") from err
