"""Serving a trained model over HTTP (`tamenet serve`, I5): request checks, chunked predictions, bearer tokens.

FastAPI and uvicorn (the ``serve`` extra) are imported only when an app is built; the names below load on
first use (PEP 562), so `tamenet serve --help` reads `serve.auth` without numpy.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

_WHERE = {"TOKEN_ENV": "auth", "authorized": "auth", "is_loopback": "auth", "resolve_token": "auth",
          "MAX_MC": "rows", "PredictRequest": "rows", "RequestError": "rows", "Schema": "rows", "parse_request": "rows"}

__all__ = ["MAX_MC", "TOKEN_ENV", "PredictRequest", "RequestError", "Schema", "authorized", "create_app",
           "is_loopback", "parse_request", "resolve_token"]


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - a thin lazy alias of app.create_app
    """`tamenet.serve.app.create_app` (imported on use: it loads torch and FastAPI)."""
    from .app import create_app as build

    return build(*args, **kwargs)
