"""The connection daemon's wire protocol, with nothing heavy imported: the asyncio client
(workers/mux.py), the daemon (workers/muxd.py) and the fast path's blocking client
(cli/fast/daemon.py) all speak it through these functions.

One unix-socket connection per request; newline-delimited JSON frames. The client sends one
request; the daemon answers `ACK` (it will run it; anything else means nothing ran), then
`{"o": [index, stream, line]}` per output line when asked to stream, then `{"results":
[...]}` or `{"error": {...}}`. A client that closes its end cancels the request; the daemon
confirms with `{"cancelled": 1}`.
"""

from __future__ import annotations

import os
import time

from tpuctl import errors, wirejson
from tpuctl.digest import sha256
from tpuctl.paths import local_dir
from tpuctl.record import as_dict
from tpuctl.workers.records import SshTarget, WorkerResult

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

PROTOCOL = 2
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS); a longer HOME runs in process.
MAX_SOCKET_PATH = 100
# One request line may carry a script bundle or a .env on stdin.
FRAME_LIMIT = 64 * 1024 * 1024
# A daemon that does not acknowledge within ACK_TIMEOUT_S (stopped, wedged) is bypassed: the
# command runs in process. The daemon never starts a request older than STALE_REQUEST_S, so
# a late daemon cannot run a command the client has given up on (same host, same clock).
ACK_TIMEOUT_S = 5.0
STALE_REQUEST_S = 4.0
# After Ctrl-C, how long the client waits for the daemon to confirm it closed the channels.
CANCEL_CONFIRM_S = 3.0
# the daemon's code: SshWorkers and what it is made of
DAEMON_FILES = ("mux.py", "muxd.py", "muxproto.py", "ssh.py", "sshfailures.py", "lines.py",
                "openssh.py", "base.py", "records.py", "jump.py")
LOST = "tpuctl's connection daemon exited during the command (it may have run)"
NO_ACK = (f"tpuctl: the connection daemon did not answer within {ACK_TIMEOUT_S:g}s; running in "
          "process (`tpuctl mux stop` ends it)")


def mux_dir() -> str:
    return local_dir("mux")


def code_id() -> str:
    """Identifies the daemon code: a client never talks to a daemon from another tpuctl
    version (an upgraded or edited install starts its own; the old one idles out)."""
    from tpuctl.filedigest import remembered

    here = os.path.dirname(os.path.abspath(__file__))

    def compute() -> str:
        h = sha256(str(PROTOCOL).encode())
        for name in DAEMON_FILES:
            with open(os.path.join(here, name), "rb") as f:
                h.update(f.read())
        return h.hexdigest()[:12]

    return remembered(f"mux-code-{PROTOCOL}", here, DAEMON_FILES, compute)


def socket_path() -> str:
    return os.path.join(mux_dir(), f"{code_id()}.sock")


def usable_socket_path() -> str | None:
    path = socket_path()
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


def encode(obj: Mapping[str, Any]) -> bytes:
    return wirejson.dumps(obj).encode() + b"\n"


# The daemon's first frame for a request it will run; anything else means nothing ran.
ACK = encode({"ack": 1})


def target_to_dict(t: SshTarget) -> dict[str, Any]:
    return as_dict(t)


def target_from_dict(d: Mapping[str, Any]) -> SshTarget:
    return SshTarget(index=int(d["index"]), host=str(d["host"]), port=int(d["port"]),
                     username=str(d["username"]),
                     host_key=None if d.get("host_key") is None else str(d["host_key"]),
                     jump=None if d.get("jump") is None else str(d["jump"]),
                     proxy_command=tuple(str(a) for a in d.get("proxy_command") or ()))


def result_to_dict(r: WorkerResult) -> dict[str, Any]:
    return as_dict(r)


def result_from_dict(d: Mapping[str, Any]) -> WorkerResult:
    return WorkerResult(index=int(d["index"]),
                        exit_code=None if d.get("exit_code") is None else int(d["exit_code"]),
                        error=d.get("error"), timed_out=bool(d.get("timed_out")),
                        duration=float(d.get("duration", 0.0)), stdout=str(d.get("stdout", "")),
                        unreached=bool(d.get("unreached")))


def lost_results(indices: Sequence[int]) -> list[WorkerResult]:
    """What a request whose daemon vanished after its ACK returns for each chosen worker."""
    return [WorkerResult(i, None, error=LOST) for i in sorted(set(indices))]


def error_to_dict(exc: errors.TpuctlError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}


def error_from_dict(d: Mapping[str, Any]) -> errors.TpuctlError:
    cls = getattr(errors, str(d.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.TpuctlError)) or \
            cls is errors.RemoteCommandError:
        cls = errors.TpuctlError
    return cls(str(d.get("message", "connection daemon error")), d.get("hint"))


def run_request(*, pool: str, key_path: str, targets: Sequence[Mapping[str, Any]],
                connect_timeout: float, connect_attempts: int, max_concurrency: int,
                persist: float, command: str | Mapping[int, str],
                indices: Sequence[int] | None, timeout: float | None, stdin_b64: str | None,
                stream: bool, capture: bool) -> dict[str, Any]:
    """One fan-out as the daemon receives it (muxd.Daemon._serve_one reads it). `command`:
    one for every chosen worker, or one per worker (its keys are then the chosen workers)."""
    per_worker = not isinstance(command, str)
    return {
        "v": PROTOCOL, "pool": pool, "key_path": key_path, "targets": list(targets),
        "connect_timeout": connect_timeout, "connect_attempts": connect_attempts,
        "max_concurrency": max_concurrency, "persist": persist,
        "command": None if per_worker else command,
        "commands": ({str(i): c for i, c in command.items()}  # type: ignore[union-attr]
                     if per_worker else None),
        "indices": None if indices is None else list(indices),
        "timeout": timeout, "capture": capture, "stream": stream, "stdin": stdin_b64,
        "sent_at": time.time(),
    }


def request_command(req: Mapping[str, Any]) -> str | dict[int, str]:
    """The command(s) of a request as `SshWorkers.run` takes them."""
    if req.get("commands") is not None:
        return {int(i): str(c) for i, c in dict(req["commands"]).items()}
    return str(req["command"])
