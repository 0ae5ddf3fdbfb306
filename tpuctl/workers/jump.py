"""The connection to a jump host (`--ssh-proxy-jump [USER@]HOST[:PORT]`) that SshWorkers
tunnels worker connections through (`direct-tcpip`, as OpenSSH's `-J`).

The jump host is the user's own machine, so it is reached as their OpenSSH's `-J` reaches it:
their ~/.ssh/config, agent and default keys, and its host key checked against their
~/.ssh/known_hosts (unknown or changed: refused). tpuctl's own key and pinned host keys are
for the workers behind it.
"""

from __future__ import annotations

from tpuctl.workers.openssh import KEEPALIVE_COUNT_MAX, KEEPALIVE_INTERVAL
from tpuctl.workers.sshfailures import PermanentSshError, one_line
from tpuctl.workers.sshlib import asyncssh


def split_jump(spec: str) -> tuple[str | None, str, int]:
    """(user or None, host, port) of `[USER@]HOST[:PORT]` (`[v6addr]:port` too)."""
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, 22
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 22
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        port = int(p)
    return user or None, host, port


async def open_jump(spec: str, *, connect_timeout: float) -> asyncssh.SSHClientConnection:
    user, host, port = split_jump(spec)
    options: dict[str, object] = {"username": user} if user else {}
    try:
        return await asyncssh.connect(host, port, connect_timeout=connect_timeout,
                                      keepalive_interval=KEEPALIVE_INTERVAL,
                                      keepalive_count_max=KEEPALIVE_COUNT_MAX,
                                      **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        login = f"{user}@{host}" if user else host
        raise PermanentSshError(
            f"jump host {spec}: its host key is not in ~/.ssh/known_hosts ({one_line(exc)}); "
            f"connect once with `ssh -p {port} {login}` to check and record it") from exc
    except asyncssh.PermissionDenied as exc:
        raise PermanentSshError(
            f"jump host {spec}: permission denied: it must accept one of your own SSH keys "
            "(agent or ~/.ssh/id_*), as `ssh -J` needs") from exc
    except asyncssh.DisconnectError as exc:
        if isinstance(exc, asyncssh.ConnectionLost):
            raise
        raise PermanentSshError(f"jump host {spec}: {one_line(exc)}") from exc
