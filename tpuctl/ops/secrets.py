"""`secrets push|list`: a .env to every worker through SSH stdin, never argv, never printed."""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from tpuctl.errors import UsageError
from tpuctl.ops.session import SliceSession, raise_on_failure

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env(text: str, source: str) -> dict[str, str]:
    """Parse .env text (python-dotenv rules). Errors name keys and lines, never values."""
    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    out: dict[str, str] = {}
    for key, value in values.items():
        if not _KEY.match(key):
            raise UsageError(f"{source}: invalid variable name {key[:40]!r}",
                             hint="names are letters, digits and _, not starting with a digit")
        if value is None:
            raise UsageError(f"{source}: {key} has no value (no '=')",
                             hint=f"write {key}=VALUE, or remove the line")
        out[key] = value
    return out


def render_env(values: Mapping[str, str]) -> bytes:
    """`export K='v'` lines: safe to source in bash whatever the value holds. A NUL cannot
    be held (bash drops it; launch uses it as a separator): refused, naming the key only."""
    for k, v in values.items():
        if "\0" in k or "\0" in v:
            raise UsageError(f"{k.replace(chr(0), '?')!r}: a value holds a NUL byte",
                             hint="remove it; environment variables cannot carry NUL")
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()).encode()


@dataclass(frozen=True)
class SecretsResult:
    keys: tuple[str, ...]
    workers: int

    def to_dict(self) -> dict[str, object]:
        return {"keys": list(self.keys), "workers": self.workers}


async def push(session: SliceSession, values: dict[str, str]) -> SecretsResult:
    from tpuctl.remote import frame

    results = await session.script("secrets", "push", stdin=frame(render_env(values)),
                                   capture=True, timeout=60)
    # never echo worker output here: it could only ever be a count, but keep the rule simple
    raise_on_failure([r.__class__(r.index, r.exit_code, r.error, r.timed_out, r.duration)
                      for r in results], "pushing secrets")
    return SecretsResult(keys=tuple(values), workers=len(results))


async def list_keys(session: SliceSession) -> dict[int, list[str]]:
    results = await session.script("secrets", "list", capture=True, timeout=60)
    raise_on_failure(results, "listing secrets")
    return {r.index: r.stdout.split() for r in results}
