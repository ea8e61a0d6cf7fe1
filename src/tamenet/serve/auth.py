"""Bearer-token checks and the loopback test of `tamenet serve`."""

from __future__ import annotations

import hmac
import ipaddress
import os

TOKEN_ENV = "TAMENET_SERVE_TOKEN"
"""The environment variable that gives the server's token when `--token` does not."""


def resolve_token(given: str | None) -> str | None:
    """The token to require: `given` (--token), else $TAMENET_SERVE_TOKEN, else None (no token). An empty one is refused."""
    token = given if given is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise ValueError(f"--token (or ${TOKEN_ENV}): expected a non-empty token, got an empty string")
    return token


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header is `Bearer <token>`; the tokens are compared in constant time
    (`hmac.compare_digest`), so the time taken does not tell how much of a guess was right."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


__all__ = ["TOKEN_ENV", "authorized", "is_loopback", "resolve_token"]
