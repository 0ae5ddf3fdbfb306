"""Worker-side scripts (bash, `set -euo pipefail`, and the Python program `tpu_metrics.py`
that `top.sh` runs), shipped in the wheel, installed per worker under
~/.tpuctl/bin/<content-hash>/ and called with short quoted arguments.

Data sent over stdin (secrets, requirements, a run's command and env) travels as one `frame`:
the scripts (lib.sh: read_framed) check its length and checksum before it replaces anything,
so a cut connection never passes for the whole input.

The command lines a session sends are built here (`script_command`, `install_command`,
`guarded`) and read back here (`script_call`, for the dry run's recording workers). Light on
purpose: the fast path (tpuctl/cli/fast/) builds the same commands; tar and gzip are imported
only to make the bundle."""

from __future__ import annotations

import os

from tpuctl import lazyre, shquote
from tpuctl.digest import sha256, sha256_hex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_HERE = os.path.dirname(os.path.abspath(__file__))
# Python programs the scripts run on workers (stdlib only, any Python 3.8+)
WORKER_PROGRAMS = ("tpu_metrics.py",)

# A constant, argument-free installer: unpack the script bundle from stdin into a
# content-addressed directory unless that exact version is already there.
_INSTALL = (
    'set -eu; d="$HOME/.tpuctl/bin"; mkdir -p "$d"; h={h}; '
    'if [ -d "$d/$h" ]; then cat >/dev/null; exit 0; fi; '
    't=$(mktemp -d "$d/.$h.XXXXXX"); tar -xzf - -C "$t"; mv "$t" "$d/$h" 2>/dev/null || '
    'rm -rf "$t"'
)
INSTALL_SCRIPTS = "install"  # what `script_call` names the scripts' installer (\w+: no script)
# The exit status of a `guarded` call on a worker without this version of the scripts: the
# script did not run there. No worker script exits with it (tests/unit/test_guarded_call.py).
ABSENT = 97
_GUARD = '[ -d "$HOME/.tpuctl/bin/{h}" ] || exit {absent}; exec '
_SCRIPT_PATH = lazyre.compile(r"^\$HOME/\.tpuctl/bin/[0-9a-f]+/(\w+)\.sh$")
_GUARD_RE = lazyre.compile(r'^\[ -d "\$HOME/\.tpuctl/bin/[0-9a-f]+" \] \|\| exit \d+; exec ')


def _script_names() -> list[str]:
    return [name for name in sorted(os.listdir(_HERE))
            if name.endswith(".sh") or name in WORKER_PROGRAMS]


def _script_files() -> list[tuple[str, bytes]]:
    files = []
    for name in _script_names():
        with open(os.path.join(_HERE, name), "rb") as f:
            files.append((name, f.read()))
    return files


# computed once a process (not with functools: the fast path does not import it)
_HASH: list[str] = []
_BUNDLE: list[tuple[str, bytes]] = []


def scripts_hash() -> str:
    """The scripts' content hash: identical scripts, identical hash (their directory name on
    every worker)."""
    if not _HASH:
        from tpuctl.filedigest import remembered

        def compute() -> str:
            digest = sha256()
            for name, data in _script_files():
                digest.update(name.encode() + b"\0" + data + b"\0")
            return digest.hexdigest()[:16]

        _HASH.append(remembered("scripts", _HERE, _script_names(), compute))
    return _HASH[0]


def bundle() -> tuple[str, bytes]:
    """(content hash, gzipped tar of every script)."""
    if not _BUNDLE:
        _BUNDLE.append(_bundle())
    return _BUNDLE[0]


def _bundle() -> tuple[str, bytes]:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for name, data in _script_files():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return scripts_hash(), buf.getvalue()


def install_command(h: str) -> str:
    return _INSTALL.format(h=shquote.quote(h))


def script_command(h: str, name: str, args: Sequence[str]) -> str:
    """`bash "$HOME/.tpuctl/bin/<hash>/<name>.sh" 'arg' ...`: short, quoted once, by code."""
    return f'bash "$HOME/.tpuctl/bin/{h}/{name}.sh" {shquote.join(args)}'.rstrip()


def guarded(h: str, command: str) -> str:
    """`command` (a `script_command`) only where this version of the scripts is installed;
    elsewhere exit ABSENT without running anything. A session's first script call, so that
    installed scripts cost no round trip of their own (ops/session.py)."""
    return _GUARD.format(h=h, absent=ABSENT) + command


def guarded_call(h: str, name: str, args: Sequence[str]) -> str:
    return guarded(h, script_command(h, name, args))


def is_guarded(command: str) -> bool:
    return bool(_GUARD_RE.match(command))


def script_call(command: str) -> tuple[str, list[str]] | None:
    """(script name, arguments) of a command `script_command` built (`install` for the
    installer; a guarded call reads as its script), else None: how a recording Workers reads
    what a session runs."""
    if command.startswith(_INSTALL.split("{h}", 1)[0]):
        return INSTALL_SCRIPTS, []
    m = _GUARD_RE.match(command)
    if m:
        command = command[m.end():]
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if words[-1:] == ["2>&1"]:
        words = words[:-1]
    m2 = _SCRIPT_PATH.match(words[1]) if len(words) > 1 and words[0] == "bash" else None
    return (m2.group(1), words[2:]) if m2 else None


FRAME_MAGIC = b"tpuctl-frame 1"
FRAME_ERROR = 65  # a worker script's exit status for a short, corrupted or foreign frame


def frame(payload: bytes) -> bytes:
    """`tpuctl-frame 1 LENGTH SHA256\\n` then the payload (read by lib.sh's read_framed)."""
    return FRAME_MAGIC + f" {len(payload)} {sha256_hex(payload)}\n".encode() + payload
