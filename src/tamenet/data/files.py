"""Readers for a user's own data: a CSV table with a header row, or an NPZ archive with arrays X and y.

They return raw arrays (`FileArrays`); `tamenet.data.datasets` turns them into a `Dataset`
(label encoding, task inference, flattening of image-shaped X, NaN checks). Either file may carry
its own split: a CSV column, or an NPZ array, named by ``data.split``, that marks every row
``train``, ``val`` or ``test``.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MISSING = frozenset({"", "na", "nan", "null"})
"""CSV cells read as a missing value (compared lower-case, after stripping spaces)."""

SPLIT_VALUES = ("train", "val", "test")
"""The values a split column (CSV) or split array (NPZ) may hold, exactly as written here."""


@dataclass(frozen=True, eq=False)
class FileArrays:
    """What a file holds: X ([N, F] for CSV, any [N, ...] for NPZ), y ([N]) and column names when known."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...] | None
    source: str  # the file's name, for descriptions and errors
    split: np.ndarray | None = None  # each row's part ("train", "val" or "test") when the file assigns them
    groups: np.ndarray | None = None  # each row's group (data.groups: a column of a CSV file), else None


def read_csv(path: str | Path, *, target: str | None, split: str | None = None,
             groups: str | None = None) -> FileArrays:
    """Read a comma-separated table (tab-separated when the file name ends in ``.tsv``): a header row, numeric
    feature columns and the `target` column.

    The target may hold numbers (integers stay integers) or strings (class labels). Empty cells and
    ``NA``/``NaN``/``null`` count as missing; any row with a missing value is an error naming how many.
    `split` names a column of ``train`` / ``val`` / ``test`` marks (not a feature); see `check_split_labels`.
    `groups` names a column of group labels (any strings; not a feature): the rows of one group are never split
    between training and judging (`tamenet.data.groups`).
    """
    file = _existing(path)
    delimiter = "\t" if file.suffix.lower() == ".tsv" else ","
    with open(file, newline="", encoding="utf-8-sig") as handle:
        rows = [(line, [cell.strip() for cell in row])
                for line, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1)]
    rows = [(line, row) for line, row in rows if any(row)]  # blank lines
    if not rows:
        raise ValueError(f"CSV file '{file.name}': expected a header row and data rows, got an empty file")
    header_line, header = rows[0]
    _check_header(header, file.name)
    if target is None:
        raise ValueError(
            f"CSV file '{file.name}': data.target must name the target column; columns are: {', '.join(header)}"
        )
    if target not in header:
        raise ValueError(
            f"CSV file '{file.name}': no target column '{target}'; columns are: {', '.join(header)}"
        )
    if split is not None:
        _check_split_column(header, split, target, file.name)
    if groups is not None and (groups not in header or groups in (target, split)):
        what = "is the target or split column" if groups in header else "is no column"
        raise ValueError(f"CSV file '{file.name}': data.groups '{groups}' {what}; expected a group column, "
                         f"columns are: {', '.join(header)}")
    apart = [target] + ([split] if split is not None else []) + ([groups] if groups is not None else [])
    if len(header) <= len(apart):
        raise ValueError(
            f"CSV file '{file.name}': expected at least one feature column besides {', '.join(map(repr, apart))}"
        )
    data = rows[1:]
    if not data:
        raise ValueError(f"CSV file '{file.name}': expected data rows after the header, got none")
    for line, row in data:
        if len(row) != len(header):
            raise ValueError(
                f"CSV file '{file.name}', line {line}: expected {len(header)} fields as in the header, got {len(row)}"
            )
    t = header.index(target)
    skip = {header.index(name) for name in apart}
    names = tuple(name for i, name in enumerate(header) if i not in skip)
    columns = [i for i in range(len(header)) if i not in skip]
    labels = None
    if split is not None:
        marks = header.index(split)
        labels = check_split_labels(np.array([row[marks] for _, row in data], dtype=str),
                                    f"CSV file '{file.name}': split column '{split}'", lines=[line for line, _ in data])
    X = np.empty((len(data), len(columns)), dtype=np.float64)
    for j, i in enumerate(columns):
        X[:, j] = _numeric_column([(line, row[i]) for line, row in data], header[i], file.name)
    y_cells = [row[t] for _, row in data]
    missing_rows = np.isnan(X).any(axis=1) | np.array([cell.lower() in MISSING for cell in y_cells])
    if missing_rows.any():
        first = data[int(np.argmax(missing_rows))][0]
        raise ValueError(
            f"CSV file '{file.name}': {int(missing_rows.sum())} of {len(data)} rows have missing values "
            f"(NaN or empty cells; the first at line {first}); remove or fill them"
        )
    group_labels = None
    if groups is not None:
        g = header.index(groups)
        group_labels = np.array([row[g] for _, row in data], dtype=str)
        empty = [line for line, row in data if row[g].lower() in MISSING]
        if empty:
            raise ValueError(f"CSV file '{file.name}': group column '{groups}' is empty in {len(empty)} rows (the "
                             f"first at line {empty[0]}); expected a group for every row")
    return FileArrays(X=X, y=_target_column(y_cells), feature_names=names, source=file.name, split=labels,
                      groups=group_labels)


def read_npz(path: str | Path, *, split: str | None = None) -> FileArrays:
    """Read arrays ``X`` ([N, F] or [N, ...] of numbers) and ``y`` ([N]) from a ``.npz`` archive (no pickles).

    `split` names a third array of N strings ``train`` / ``val`` / ``test``, one per row; see `check_split_labels`.
    """
    file = _existing(path)
    labels = None
    try:
        with np.load(file, allow_pickle=False) as archive:
            keys = list(archive.files)
            if "X" not in keys or "y" not in keys:
                found = ", ".join(keys) if keys else "none"
                raise ValueError(f"NPZ file '{file.name}': expected arrays named 'X' and 'y'; found: {found}")
            if split is not None and split not in keys:
                raise ValueError(
                    f"NPZ file '{file.name}': no split array '{split}' (data.split); found: {', '.join(keys)}"
                )
            X, y = archive["X"], archive["y"]
            if split is not None:
                labels = archive[split]
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"NPZ file '{file.name}': cannot be read as an .npz archive ({error})") from error
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise ValueError(
                f"NPZ file '{file.name}': holds object arrays, which need pickle; save X and y as numeric "
                "(or, for y, string) arrays"
            ) from error
        raise
    if X.ndim < 2:  # [N, F] rows, or [N, ...] images / signals (flattened, their shape kept)
        hint = "; one feature per row: save X.reshape(-1, 1)" if X.ndim == 1 else ""
        raise ValueError(f"NPZ file '{file.name}': expected X of shape [N, F] (rows x features, or [N, ...] images), "
                         f"got shape {list(X.shape)}{hint}")
    if labels is not None:
        where = f"NPZ file '{file.name}': split array '{split}'"
        if labels.ndim != 1 or len(labels) != len(X):
            raise ValueError(
                f"{where}: expected shape [{len(X)}] (one mark per row of X), got shape {list(labels.shape)}"
            )
        labels = check_split_labels(labels, where)
    return FileArrays(X=X, y=y, feature_names=None, source=file.name, split=labels)


def check_split_labels(labels: np.ndarray, where: str, *, lines: list[int] | None = None) -> np.ndarray:
    """The split marks as a str array, checked: every value is ``train``, ``val`` or ``test``, at least one ``train``.

    `where` starts the one-line error (e.g. the file and column); `lines` (file line per row) lets it
    name the first bad line, else it names the first bad row (counted from 0).
    """
    labels = np.asarray(labels)
    if labels.dtype.kind == "S":
        labels = np.char.decode(labels, "utf-8")
    expected = ", ".join(SPLIT_VALUES)
    if labels.dtype.kind != "U":
        raise ValueError(f"{where}: expected the strings {expected}, got values of dtype {labels.dtype}")
    bad = ~np.isin(labels, SPLIT_VALUES)
    if bad.any():
        values, counts = np.unique(labels[bad], return_counts=True)
        order = np.argsort(-counts, kind="stable")[:5]
        shown = ", ".join(f"{str(values[i])!r} ({counts[i]} row{'s' if counts[i] > 1 else ''})" for i in order)
        more = f" and {len(values) - 5} more" if len(values) > 5 else ""
        first = int(np.argmax(bad))
        at = f"line {lines[first]}" if lines is not None else f"row {first}"
        raise ValueError(
            f"{where}: expected only {expected}; {int(bad.sum())} of {len(labels)} rows hold other values: "
            f"{shown}{more} (the first at {at})"
        )
    if not (labels == "train").any():
        raise ValueError(f"{where}: expected at least one row marked 'train', got none among {len(labels)} rows")
    return labels.astype(str)


def _check_split_column(header: list[str], split: str, target: str, source: str) -> None:
    if split == target:
        raise ValueError(f"CSV file '{source}': data.split and data.target both name column '{split}'; "
                         "expected a separate column of train / val / test marks")
    if split not in header:
        raise ValueError(
            f"CSV file '{source}': no split column '{split}' (data.split); columns are: {', '.join(header)}"
        )


def _existing(path: str | Path) -> Path:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"data.path: expected a file path string, got {type(path).__name__}")
    file = Path(path).expanduser()
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "not found"
        raise FileNotFoundError(f"data file {what}: {file}")
    return file


def _check_header(header: list[str], source: str) -> None:
    if all(_is_float(cell) for cell in header if cell):
        raise ValueError(
            f"CSV file '{source}': the first row ({', '.join(header[:5])}{', ...' if len(header) > 5 else ''}) "
            "looks like data; expected a header row naming the columns"
        )
    empty = [i + 1 for i, name in enumerate(header) if not name]
    if empty:
        raise ValueError(f"CSV file '{source}': header column(s) {empty} have no name; expected a name for every column")
    seen: set[str] = set()
    twice = sorted({name for name in header if name in seen or seen.add(name)})
    if twice:
        raise ValueError(f"CSV file '{source}': expected unique column names, got repeated: {', '.join(twice)}")


def _numeric_column(cells: list[tuple[int, str]], name: str, source: str) -> np.ndarray:
    out = np.empty(len(cells), dtype=np.float64)
    for k, (line, cell) in enumerate(cells):
        if cell.lower() in MISSING:
            out[k] = np.nan
            continue
        try:
            out[k] = float(cell)
        except ValueError:
            raise ValueError(
                f"CSV file '{source}': feature column '{name}' must be numeric, got '{cell}' at line {line}"
            ) from None
    return out


def _target_column(cells: list[str]) -> np.ndarray:
    if all(_is_int(cell) for cell in cells):
        return np.array([int(cell) for cell in cells], dtype=np.int64)
    if all(_is_float(cell) for cell in cells):
        return np.array([float(cell) for cell in cells], dtype=np.float64)
    return np.array(cells, dtype=str)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
