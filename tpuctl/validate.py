"""Data tpuctl did not write itself (API answers, what workers print) checked before it
reaches an argv, a config file or a local path.

An API or a worker can be wrong, spoofed or compromised: an address such as
`-oProxyCommand=...` handed to OpenSSH runs a command here, a run id such as `../../x` in a
path writes outside the directory it was meant for. Each check raises ValueError naming the
problem; callers turn it into their typed error.
"""

from __future__ import annotations

from tpuctl import lazyre

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

RUN_ID_RE = lazyre.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PROJECT_RE = lazyre.compile(r"^[a-z0-9][a-z0-9.:-]{0,99}$")  # incl. domain-scoped example.com:p
_ZONE_RE = lazyre.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME_RE = lazyre.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # accelerator types, runtimes
_HOST_KEY_TYPES = {"ssh-ed25519": 32}  # what tpuctl pins (guest attributes' hostkeys/...)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def ip_address(value: object) -> str:
    """An IPv4/IPv6 address, in its canonical form; never a host name or an option."""
    import ipaddress  # here: the fast path (tpuctl/cli/fast/) reads run ids only

    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ValueError(f"address {_shown(value)} is not an IP address") from None


def port(value: object) -> int:
    """A TCP port 1-65535 from an int or a string of digits only."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {_shown(value)} is not a number in 1-65535")
    return int(text)


def host_key(value: object, key_type: str = "ssh-ed25519") -> str:
    """`type base64` for a public host key whose blob really is a key of that type, from
    `base64`, `type base64` or `type base64 comment` (the comment is dropped)."""
    import base64
    import struct

    parts = str(value).split()
    blob_text = parts[1] if len(parts) >= 2 else "".join(parts)
    try:
        blob = base64.b64decode(blob_text, validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        name = blob[4:4 + n].decode("ascii")
        (k,) = struct.unpack(">I", blob[4 + n:8 + n])
        ok = (name == key_type and k == _HOST_KEY_TYPES.get(key_type)
              and len(blob) == 8 + n + k)
    except (ValueError, struct.error, UnicodeDecodeError):
        ok = False
    if not ok or (len(parts) >= 2 and parts[0] != key_type):
        raise ValueError(f"host key {_shown(value)} is not an {key_type} public key")
    return f"{key_type} {blob_text}"


_INSTANCE_RE = lazyre.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")


def instance_name(value: str) -> str:
    """A GCE instance name (a worker's `hostname` guest attribute: what IAP takes)."""
    if not _INSTANCE_RE.match(value):
        raise ValueError(f"instance name {_shown(value)} is not a Compute instance name")
    return value


def project(value: str) -> str:
    if not _PROJECT_RE.match(value):
        raise ValueError(f"project {_shown(value)} is not a project id")
    return value


def zone(value: str) -> str:
    if not _ZONE_RE.match(value):
        raise ValueError(f"zone {_shown(value)} is not a zone name")
    return value


def plain_name(value: str, what: str) -> str:
    """Accelerator types, runtime versions: letters, digits, '.', '_', '-' (or empty)."""
    if value and not _NAME_RE.match(value):
        raise ValueError(f"{what} {_shown(value)} has characters no {what} has")
    return value


def printable(value: str, what: str) -> str:
    """Free text shown on a terminal (labels): no control characters, no whitespace."""
    if not value.isprintable() or any(c.isspace() for c in value) or len(value) > 256:
        raise ValueError(f"{what} {_shown(value)} holds control characters or spaces")
    return value


_RUN_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def is_run_id(value: str) -> bool:
    """`RUN_ID_RE.match(value)` (a trailing newline included, as `$` takes it) without `re`:
    `status` checks every worker's run id on the fast path (docs/performance.md)."""
    body = value[:-1] if value.endswith("\n") else value
    return 0 < len(body) <= 128 and body[0] in _RUN_FIRST and not body.strip(_RUN_FIRST + "._-")


def run_id(value: str) -> str:
    if not is_run_id(value):
        raise ValueError(f"run id {_shown(value)} is not of the form letters, digits, "
                         "'.', '_' and '-'")
    return value


def inside(base: Path, *parts: str) -> Path:
    """base/parts..., resolved, and refused unless it stays under base (resolved too), so
    neither `..` nor a symbolic link leads the path out of it."""
    root = base.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and not path.is_relative_to(root):
        raise ValueError(f"{_shown(str(root.joinpath(*parts)))} leads outside {root}")
    return path
