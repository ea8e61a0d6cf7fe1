"""Looking names up in the plain dicts that declare what a recipe may name."""

from __future__ import annotations

import difflib
from typing import Any


def lookup(registry: dict[str, Any], name: str, what: str) -> Any:
    """registry[name], or a ValueError that lists the valid names and suggests the closest one."""
    if not isinstance(name, str) or name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown {what} '{name}'{hint} (valid: {', '.join(registry)})")
    return registry[name]
