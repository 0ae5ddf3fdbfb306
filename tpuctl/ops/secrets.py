"""`secrets push|list`: a .env to every worker through SSH stdin, never argv, never printed."""

from __future__ import annotations

import io
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tpuctl.errors import UsageError
from tpuctl.naming import ENV_KEY_RE
from tpuctl.ops.outcome import fanout_exit_code
from tpuctl.ops.session import SliceSession, is_unreachable, raise_on_failure

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports


def parse_env(text: str, source: str) -> dict[str, str]:
    """Parse .env text (python-dotenv rules), all of it before anything is sent: a line that
    is not KEY=VALUE is an error naming its line number, never its content (it may be a
    secret), and nothing is pushed. Read with dotenv's parser, which reports such lines
    instead of logging a warning and skipping them."""
    from dotenv.parser import parse_stream

    out: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise UsageError(f"{source}: line {line} is not KEY=VALUE; nothing was pushed",
                             hint="fix or remove that line (quote values with spaces: "
                             "KEY='a b'); the secrets on the workers are unchanged")
        key, value = binding.key, binding.value
        if key is None:  # a comment or a blank line
            continue
        if not ENV_KEY_RE.match(key):
            raise UsageError(f"{source}: line {line}: invalid variable name; nothing was pushed",
                             hint="names are letters, digits and _, not starting with a digit")
        if value is None:
            raise UsageError(f"{source}: line {line} has no value (no '='); nothing was pushed",
                             hint="write KEY=VALUE, or remove the line")
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
    workers: int  # workers that have the new file
    unreachable: dict[int, str] = field(default_factory=dict)  # worker -> why

    @property
    def exit_code(self) -> int:
        """0, or 255 when a worker could not be reached (the others have the secrets)."""
        return fanout_exit_code([], unreachable=bool(self.unreachable))

    def to_dict(self) -> dict[str, object]:
        return {"keys": list(self.keys), "workers": self.workers,
                "unreachable_workers": sorted(self.unreachable), "exit_code": self.exit_code}


async def push(session: SliceSession, values: dict[str, str], *, partial: bool = False
               ) -> SecretsResult:
    """The secrets file on every worker. `partial` (the `secrets push` command): workers that
    cannot be reached are named in the result and the others still get it; otherwise (`up`,
    whose job must not start with old secrets anywhere) any failure is an error."""
    from tpuctl.remote import frame

    results = await session.script("secrets", "push", stdin=frame(render_env(values)),
                                   capture=True, timeout=60)
    # never echo worker output here: it could only ever be a count, but keep the rule simple
    raise_on_failure([r.__class__(r.index, r.exit_code, r.error, r.timed_out, r.duration)
                      for r in results if not (partial and is_unreachable(r))],
                     "pushing secrets")
    gone = {r.index: r.error or "unreachable" for r in results if is_unreachable(r)}
    return SecretsResult(keys=tuple(values), workers=len(results) - len(gone), unreachable=gone)


@dataclass(frozen=True)
class SecretsListing:
    keys: dict[int, list[str]]  # worker -> key names
    unreachable: dict[int, str] = field(default_factory=dict)  # worker -> why

    @property
    def exit_code(self) -> int:
        return fanout_exit_code([], unreachable=bool(self.unreachable))

    def to_dict(self) -> dict[str, object]:
        rows: list[dict[str, object]] = [{"worker": i, "keys": k, "error": None}
                                         for i, k in self.keys.items()]
        rows += [{"worker": i, "keys": None, "error": e} for i, e in self.unreachable.items()]
        return {"exit_code": self.exit_code,
                "workers": sorted(rows, key=lambda r: int(str(r["worker"])))}


async def list_keys(session: SliceSession) -> SecretsListing:
    results = await session.script("secrets", "list", capture=True, timeout=60)
    raise_on_failure([r for r in results if not is_unreachable(r)], "listing secrets")
    return SecretsListing(
        keys={r.index: r.stdout.split() for r in results if not is_unreachable(r)},
        unreachable={r.index: r.error or "unreachable" for r in results if is_unreachable(r)})


@dataclass(frozen=True)
class SecretsPushRequest:
    name: str
    file: str = ".env"  # a .env file, or - for `stdin`
    stdin: str | None = None  # the text read from stdin when `file` is -


def push_node(ports: Ports, req: SecretsPushRequest) -> SecretsResult:
    """The `secrets push` command: the whole file checked before anything is sent; workers
    that cannot be reached are named, the others get it."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.session import on_slice

    validate_node_name(req.name)
    if req.file == "-":
        text, source = req.stdin or "", "stdin"
    else:
        path = Path(req.file)
        if not path.is_file():
            raise UsageError(f"secrets file {req.file!r} not found",
                             hint="pass a .env file path, or - to read stdin")
        text, source = path.read_text(), req.file
    values = parse_env(text, source)
    return on_slice(ports, req.name, lambda s: push(s, values, partial=True))


def list_node(ports: Ports, name: str) -> SecretsListing:
    """The `secrets list` command."""
    from tpuctl.ops.session import on_slice

    return on_slice(ports, name, list_keys)
