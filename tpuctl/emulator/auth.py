"""The emulator has an owner: a random bearer token, made at every start, written 0600 into the
0700 state dir, and required on every REST and admin call (docs/emulator.md#who-may-use-it).

Loopback does not separate the users of one machine; the token does. What it cannot do:
every worker still runs as the emulator's OS user, so anyone holding the token (or a shell on
a worker) acts as that user.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from tpuctl.emulator.errors import ApiError
from tpuctl.paths import private_dir

__all__ = ["TOKEN_FILE", "new_token", "private_dir", "require_token", "write_private"]

TOKEN_FILE = "token"
METADATA_PREFIX = "/metadata/"  # metadata.py: signed per worker instead
# GCP's own texts for a call without credentials and one with bad credentials
_MISSING = ("Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential.")
_INVALID = ("Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write a file 0600, atomically (a reader never sees it half-written or readable)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _refuse(message: str) -> web.Response:
    import json

    return web.Response(status=401, text=json.dumps(ApiError(401, "UNAUTHENTICATED", message)
                                                    .envelope()),
                        content_type="application/json",
                        headers={"WWW-Authenticate": 'Bearer realm="tpuctl-emulator"'})


def require_token(token: str) -> Middleware:
    """aiohttp middleware: `Authorization: Bearer <token>` on every request, before anything
    else (faults, routing, the body) is looked at."""
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(METADATA_PREFIX):
            return await handler(request)  # workers' metadata servers check their signature
        header = request.headers.get("Authorization", "")
        if not header:
            return _refuse(_MISSING)
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 expected):
            return _refuse(_INVALID)
        return await handler(request)

    return check
