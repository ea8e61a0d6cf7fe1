"""Packages whose public names load on first use (PEP 562): what keeps `import tamenet` and the command line
from importing torch before they need it."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, exports: dict[str, str],
                    namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's `__getattr__` and `__dir__`: `exports` maps a public name to the submodule that defines it;
    a name is imported on first use and kept in the package's `namespace` (its `globals()`) for later look-ups."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", exports)))

    return __getattr__, __dir__
