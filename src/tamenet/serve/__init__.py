"""Serving a trained model over HTTP (`tamenet serve`, I5): request checks, chunked predictions, bearer tokens.

FastAPI and uvicorn (the ``serve`` extra) are imported only when an app is built.
"""

from .auth import TOKEN_ENV, authorized, is_loopback, resolve_token
from .rows import MAX_MC, PredictRequest, RequestError, Schema, parse_request

__all__ = ["MAX_MC", "TOKEN_ENV", "PredictRequest", "RequestError", "Schema", "authorized", "create_app",
           "is_loopback", "parse_request", "resolve_token"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - a thin lazy alias of app.create_app
    """`tamenet.serve.app.create_app` (imported on use: it loads torch and FastAPI)."""
    from .app import create_app as build

    return build(*args, **kwargs)
