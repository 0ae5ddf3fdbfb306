"""One API call as its handler sees it (`Call`), what a handler answers (`Reply`), and the
API's pagination: what every route handler of api.py and admin.py shares."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tpuctl.emulator.errors import invalid_argument
from tpuctl.emulator.state import EmulatorState

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("tpuctl_emulator_state", EmulatorState)
INFO_KEY = web.AppKey("tpuctl_emulator_info", dict[str, Any])

DEFAULT_PAGE_SIZE = 500

Handler = Callable[["Call"], Awaitable[Any]]


@dataclass
class Call:
    """One matched request: the regex groups, the query, the JSON body."""

    request: web.Request
    match: re.Match[str]
    state: EmulatorState

    @property
    def query(self) -> Any:
        return self.request.query

    async def body(self) -> dict[str, Any]:
        raw = await self.request.read()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise invalid_argument(f"Invalid JSON payload received: {e}") from e
        if not isinstance(data, dict):
            raise invalid_argument("Invalid JSON payload received: expected an object")
        return data

    def group(self, name: str) -> str:
        return self.match.group(name)


@dataclass(frozen=True)
class Reply:
    """A response body plus the message type it holds (to re-encode its enums)."""

    message: str
    body: Any


def page(call: Call, items: list[Any], field: str, message: str) -> Reply:
    """Offset-based pages behind an opaque token, as the API's pageSize/pageToken expect."""
    try:
        size = int(call.query.get("pageSize") or 0)
    except ValueError as e:
        raise invalid_argument("pageSize must be an integer") from e
    if size < 0:
        raise invalid_argument("pageSize must not be negative")
    size = size or DEFAULT_PAGE_SIZE
    token = call.query.get("pageToken") or ""
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:"))
        except ValueError as e:
            raise invalid_argument(f"invalid pageToken {token!r}") from e
        if start < 0 or start > len(items):
            raise invalid_argument(f"invalid pageToken {token!r}")
    page = items[start : start + size]
    out: dict[str, Any] = {}
    if page:
        out[field] = page
    if start + size < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(f"o:{start + size}".encode()).decode()
    return Reply(message, out)
