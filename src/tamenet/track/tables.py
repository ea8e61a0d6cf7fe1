"""Plain-text aligned tables for terminal summaries."""

from __future__ import annotations

import math
import sys
from typing import Any

__all__ = ["format_cell", "format_table"]


def _plain(value: Any) -> Any:
    # a value can be a tensor or a numpy value only once those libraries are loaded: tables need neither
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if np is not None and isinstance(value, np.generic):
        return value.item()
    if np is not None and isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value


def format_cell(value: Any) -> str:
    """One cell: floats to 4 significant digits, integers in full, ``None`` as ``-``, the rest via `str`."""
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return format(value, ".4g")
    return str(value)


def _is_number(value: Any) -> bool:
    value = _plain(value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_table(header: list[str], rows: list[list], *, title: str = "") -> str:
    """An aligned plain-text table: numbers right-aligned (4 significant digits), text left-aligned.

    Returns the lines joined by newlines, without a trailing newline; `title` (if any) goes on top.
    """
    if not isinstance(header, (list, tuple)):
        raise TypeError(f"header: expected a list of column names, received {type(header).__name__}")
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"rows: expected a list of rows (lists), received {type(rows).__name__}")
    width = len(header)
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            raise TypeError(f"rows[{index}]: expected a list of cells, received {type(row).__name__}")
        if len(row) != width:
            raise ValueError(f"rows[{index}]: expected {width} cells (one per header column), received {len(row)}")

    cells = [[format_cell(value) for value in row] for row in rows]
    names = [str(name) for name in header]
    widths = [max([len(names[col])] + [len(row[col]) for row in cells]) for col in range(width)]
    numeric = [bool(rows) and all(_is_number(row[col]) or _plain(row[col]) is None for row in rows)
               for col in range(width)]

    def line(texts: list[str]) -> str:
        parts = [text.rjust(widths[col]) if numeric[col] else text.ljust(widths[col])
                 for col, text in enumerate(texts)]
        return "  ".join(parts).rstrip()

    out = []
    if title:
        out.append(str(title))
    out.append(line(names))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in cells)
    return "\n".join(out)
