"""What `POST /predict` accepts, checked before any model runs: every mistake is a `RequestError` with an
HTTP status and a message saying what was expected and what was received.

A body is JSON: a list of rows, or an object ``{"rows": [...], "mc": T, "member": K}`` (``mc`` and
``member`` optional). Rows are all lists of numbers (the features in training order) or all objects
mapping every training feature name to a number (any order; the training target column may be
there and is ignored). Numbers must be finite (JSON's NaN and Infinity, and values beyond float32's
range, are refused), booleans and strings are not numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_MC = 1000
"""The largest number of Monte-Carlo dropout masks one request may ask for."""

FLOAT32_MAX = float(np.finfo(np.float32).max)
SHOWN = 8  # names an error lists before saying how many more


class RequestError(ValueError):
    """A request the server refuses: `status` is the HTTP status (400, 413, 422), the message says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PredictRequest:
    """A checked request: rows float32 [N, F] in training order, T masks (None: a plain prediction), the member."""

    rows: np.ndarray
    mc: int | None = None
    member: int | None = None


@dataclass(frozen=True)
class Schema:
    """What the model takes: its feature names in training order (None: by position only), their count,
    the training target's name (allowed and ignored in records) and its member count."""

    n_features: int
    feature_names: tuple[str, ...] | None = None
    target: str | None = None
    members: int = 1


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(type(value),
                                                                                     type(value).__name__)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{where}: expected a number, got {_kind(value)} {json.dumps(value)[:40]}")
    number = float(value)
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise RequestError(f"{where}: expected a finite number (within float32's range), got {value!r}")
    return number


def _integer(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"'{key}': expected an integer in [{low}, {high}], got {json.dumps(value)[:40]}")
    return value


def parse_json(body: bytes) -> Any:
    """The body as JSON (400 when it is not UTF-8 JSON); NaN and Infinity are read, and refused later as values."""
    if not body.strip():
        raise RequestError("expected a JSON body (a list of rows, or {\"rows\": [...]}), got an empty body", 400)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"expected a JSON body (a list of rows, or {{\"rows\": [...]}}), got malformed JSON: "
                           f"{err}", 400) from None


def parse_request(body: bytes, schema: Schema) -> PredictRequest:
    """The checked `PredictRequest` of a raw body (see the module's docstring), or a `RequestError`."""
    payload = parse_json(body)
    mc = member = None
    if isinstance(payload, dict):
        unknown = sorted(set(payload) - {"rows", "mc", "member"})
        if unknown:
            raise RequestError(f"unknown key(s) {_listed(unknown)}; expected 'rows' and optionally 'mc', 'member'")
        if "rows" not in payload:
            raise RequestError("expected a key 'rows' holding a list of rows")
        if payload.get("mc") is not None:
            mc = _integer(payload["mc"], "mc", 1, MAX_MC)
        if payload.get("member") is not None:
            member = _integer(payload["member"], "member", 0, schema.members - 1)
        payload = payload["rows"]
    if not isinstance(payload, list):
        raise RequestError(f"expected the rows as a list (of lists or of objects), got {_kind(payload)}")
    if not payload:
        raise RequestError("expected at least one row, got an empty list")
    if isinstance(payload[0], dict):
        rows = records_to_rows(payload, schema)
    else:
        rows = lists_to_rows(payload, schema.n_features)
    return PredictRequest(rows, mc, member)


def lists_to_rows(rows: list, n_features: int) -> np.ndarray:
    """Rows given as lists of F numbers -> float32 [N, F]."""
    out = np.empty((len(rows), n_features), dtype=np.float32)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise RequestError(f"row {i}: expected a list of {n_features} numbers like the first row, got {_kind(row)}")
        if len(row) != n_features:
            raise RequestError(f"row {i}: expected {n_features} features (in training order), got {len(row)}")
        out[i] = [_number(v, f"row {i}, feature {j}") for j, v in enumerate(row)]
    return out


def records_to_rows(records: list, schema: Schema) -> np.ndarray:
    """Rows given as objects {feature name: number} -> float32 [N, F] in training order."""
    names = schema.feature_names
    if names is None:
        raise RequestError("this model was saved without feature names: expected rows as lists of "
                           f"{schema.n_features} numbers in training order, got objects")
    wanted = set(names)
    out = np.empty((len(records), len(names)), dtype=np.float32)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(f"row {i}: expected an object of feature names like the first row, got {_kind(record)}")
        missing = [n for n in names if n not in record]
        unknown = [k for k in record if k not in wanted and k != schema.target]
        if missing or unknown:
            raise RequestError(f"row {i}: expected the {len(names)} training features by name; missing "
                               f"{_listed(missing) or 'none'}; unknown {_listed(unknown) or 'none'}")
        out[i] = [_number(record[n], f"row {i}, feature {n!r}") for n in names]
    return out


__all__ = ["MAX_MC", "PredictRequest", "RequestError", "Schema", "lists_to_rows", "parse_json", "parse_request",
           "records_to_rows"]
