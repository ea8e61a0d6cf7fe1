"""The HTTP app of `tamenet serve` (FastAPI): `POST /predict`, `GET /health`, `GET /metadata`.

`create_app(trained)` builds it around a loaded model; `app_from_env()` is the factory uvicorn's
worker processes call (the run directory and limits come from environment variables set by the
command). Every refused request gets a JSON body `{"detail": "<what was expected, what came>"}`:
400 malformed JSON, 401 a missing or wrong token, 413 a body over the size limit, 422 rows that do
not fit the model. Bodies are read and checked before the model runs; prediction runs in a worker
thread, so a slow request does not hold up the others.
"""

import os
import time
from typing import Any

from ..extras import require
from ..trained import TrainedModel
from .auth import TOKEN_ENV, authorized
from .predictor import CHUNK_ROWS, Predictor
from .rows import MAX_MC, RequestError, Schema, parse_request

MAX_BODY = 16 * 1024 * 1024
"""The largest request body in bytes (16 MiB) unless `max_body` says otherwise."""

RUN_ENV, MAX_BODY_ENV, CHUNK_ENV = "TAMENET_SERVE_RUN_DIR", "TAMENET_SERVE_MAX_BODY", "TAMENET_SERVE_CHUNK_ROWS"
"""Environment variables through which `tamenet serve --workers N` hands its options to uvicorn's workers."""

OPEN_PATHS = ("/health",)
"""Paths answered without a token."""


def schema_of(trained: TrainedModel) -> Schema:
    return Schema(int(trained.preprocessing["n_features"]), trained.feature_names, trained.target_name,
                  trained.model.members)


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes: by its Content-Length, or while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"expected a body of at most {limit} bytes, got {declared} bytes (send fewer rows "
                           "per request)", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"expected a body of at most {limit} bytes, got more (send fewer rows per request)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(trained: TrainedModel, *, token: str | None = None, max_body: int = MAX_BODY,
               chunk_rows: int = CHUNK_ROWS) -> Any:
    """The FastAPI app serving `trained` (see the module's docstring); `token` requires `Bearer <token>`
    on every path but `/health`."""
    fastapi = require("fastapi", extra="serve", feature="tamenet serve")
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from ..delivery import delivery_metadata

    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
        raise ValueError(f"max_body: expected a positive number of bytes, got {max_body!r}")
    predictor = Predictor(trained, chunk_rows=chunk_rows)
    schema = schema_of(trained)
    metadata = delivery_metadata(trained, None)
    metadata["serving"] = {"max_body_bytes": max_body, "chunk_rows": chunk_rows, "max_mc": MAX_MC,
                           "token_required": token is not None}
    started = time.time()
    app = fastapi.FastAPI(title="tamenet", description="Predictions of a tamenet run", docs_url=None,
                          redoc_url=None, openapi_url=None)

    def refuse(status: int, message: str, **headers: str) -> Any:
        return JSONResponse({"detail": message}, status_code=status, headers=headers or None)

    if token is not None:
        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Any:
            if request.url.path not in OPEN_PATHS and not authorized(request.headers.get("authorization"), token):
                return refuse(401, "expected the header 'Authorization: Bearer <token>' with this server's token",
                              **{"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - started, 3)}

    @app.get("/metadata")
    async def get_metadata() -> dict[str, Any]:
        return metadata

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        try:
            body = await read_body(request, max_body)
            return await run_in_threadpool(answer, body)
        except RequestError as err:
            return refuse(err.status, str(err))

    def answer(body: bytes) -> dict[str, Any]:
        checked = parse_request(body, schema)
        try:
            return predictor(checked.rows, mc=checked.mc, member=checked.member)
        except ValueError as err:  # e.g. Monte-Carlo dropout asked of a model without dropout
            raise RequestError(" ".join(str(err).split())) from err

    app.state.predictor = predictor
    return app


def app_from_env() -> Any:
    """The app of the run directory in $TAMENET_SERVE_RUN_DIR (uvicorn's factory for `--workers N`)."""
    from ..trained import load_run

    run_dir = os.environ.get(RUN_ENV)
    if not run_dir:
        raise ValueError(f"app_from_env: expected the run directory in ${RUN_ENV}, got nothing")
    return create_app(load_run(run_dir), token=os.environ.get(TOKEN_ENV) or None,
                      max_body=int(os.environ.get(MAX_BODY_ENV, MAX_BODY)),
                      chunk_rows=int(os.environ.get(CHUNK_ENV, CHUNK_ROWS)))


__all__ = ["CHUNK_ENV", "MAX_BODY", "MAX_BODY_ENV", "OPEN_PATHS", "RUN_ENV", "app_from_env", "create_app",
           "read_body", "schema_of"]
