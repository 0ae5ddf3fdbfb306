"""Just enough of the command line for the fast path: the common forms of `exec`, `status`,
`tail`, `stop` and `ssh-config`, or None for anything else (help, an unknown or repeated
option, an attached short option, a value that looks like an option, a NUL byte, ...), which
the full CLI then parses and, if need be, refuses with its own message and exit code."""

from __future__ import annotations

from tpuctl.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# option -> (field, kind); kind "flag", "str", "float" (seconds: plain decimals only) or
# "int" (digits only). Values click would also take (1e3, +5, " 5") are left to it.
_CLOUD = {"--api-endpoint": ("api_endpoint", "str"), "--project": ("project", "str"),
          "--zone": ("zone", "str")}
_JSON = {"--json": ("json", "flag")}
OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "exec": {"--worker": ("worker", "str"), "-w": ("worker", "str"),
             "--timeout": ("timeout", "float"), **_JSON, **_CLOUD},
    "status": {**_JSON, **_CLOUD},
    "tail": {"-n": ("lines", "int"), "--lines": ("lines", "int"),
             "--worker": ("worker", "str"), "-w": ("worker", "str"), **_CLOUD},
    "stop": {"--grace": ("grace", "float"), **_JSON, **_CLOUD},
    "ssh-config": dict(_CLOUD),
}
# the positional arguments after NAME each command takes (RUN: a run id, optional)
_MAX_POSITIONALS = {"exec": 1, "status": 2, "tail": 2, "stop": 2, "ssh-config": 1}
_DIGITS = "0123456789"


def _int(value: str) -> bool:
    """`[0-9]+`, without `re` (its import alone is ~4 ms of a fast-path command)."""
    return bool(value) and not value.strip(_DIGITS)


def _float(value: str) -> bool:
    """`[0-9]+(\\.[0-9]*)?` or `\\.[0-9]+`: plain decimals."""
    whole, _, frac = value.partition(".")
    return bool(whole or frac) and (not whole or _int(whole)) and (not frac or _int(frac))


@record
class Args:
    command: str  # exec, status, tail, stop, ssh-config
    name: str
    run: str | None = None
    argv: tuple[str, ...] = ()  # exec: the command after --
    worker: str = "all"
    timeout: float | None = None
    json: bool = False
    lines: int = 50
    grace: float = 10.0
    api_endpoint: str | None = None
    project: str | None = None
    zone: str | None = None


def parse(argv: Sequence[str]) -> Args | None:
    if not argv or argv[0] not in OPTIONS or any("\0" in a for a in argv):
        return None
    command, rest = argv[0], list(argv[1:])
    known = OPTIONS[command]
    after: list[str] = []
    if "--" in rest:
        cut = rest.index("--")
        rest, after = rest[:cut], rest[cut + 1:]
        if command != "exec":
            return None
    elif command == "exec":
        return None  # `exec NAME CMD...` without `--`: click's reading of it is the rule
    values: dict[str, object] = {}
    positionals: list[str] = []
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if not token.startswith("-") or token == "-":
            positionals.append(token)
            continue
        if token.startswith("--"):
            opt, eq, attached = token.partition("=")
        elif "=" in token:
            return None  # click reads `-w=1` as the value "=1"
        else:
            opt, eq, attached = token, "", ""
        if opt not in known:
            return None
        field, kind = known[opt]
        if field in values:
            return None  # repeated: click keeps the last one; let it
        if kind == "flag":
            if eq:
                return None
            values[field] = True
            continue
        if eq:
            value = attached
        elif i < len(rest):
            value = rest[i]
            i += 1
        else:
            return None
        if not value or value.startswith("-"):
            return None
        if kind == "float":
            if not _float(value):
                return None
            values[field] = float(value)
        elif kind == "int":
            if not _int(value):
                return None
            values[field] = int(value)
        else:
            values[field] = value
    if not positionals or len(positionals) > _MAX_POSITIONALS[command]:
        return None
    if command == "exec" and not after:
        return None
    return Args(command=command, name=positionals[0],
                run=positionals[1] if len(positionals) > 1 else None, argv=tuple(after),
                **values)  # type: ignore[arg-type]
