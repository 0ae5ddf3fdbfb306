"""OpenSSH client arguments that reach a worker exactly as `SshWorkers` does: the pinned
known_hosts line and the option list `tpuctl ssh` (and `ssh-config`) hand to `ssh`.

Pure functions of a target; no asyncssh import, so the OpenSSH path stays light.
"""

from __future__ import annotations

from pathlib import Path

from tpuctl.workers.base import SshTarget

# Keepalives, shared with SshWorkers: a dead worker (preempted VM) is noticed within a minute.
KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_COUNT_MAX = 4


def known_hosts_line(target: SshTarget) -> str:
    """A known_hosts entry pinning the target's host key (`[host]:port type blob`)."""
    if not target.host_key:
        raise ValueError(f"worker {target.index} has no published host key to pin")
    parts = target.host_key.split()
    if len(parts) < 2:
        raise ValueError(f"worker {target.index}: malformed host key {target.host_key!r}")
    host = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    return f"{host} {parts[0]} {parts[1]}"


def proxy_command_line(argv: tuple[str, ...]) -> str:
    """A proxy argv as OpenSSH's ProxyCommand takes it: quoted once for the shell ssh runs
    it with, and every `%` doubled so ssh's own %-expansion leaves it as it is (tpuctl has
    filled in the worker's address and port already)."""
    import shlex

    line = shlex.join(argv).replace("%", "%%")
    if not line.isprintable():
        raise ValueError(f"proxy command {line[:80]!r} holds control characters")
    return line


def route_args(target: SshTarget) -> list[str]:
    """How OpenSSH gets to the target: a jump host (-J, reached as the user's ssh reaches
    it) or a proxy command; nothing for a direct connection."""
    if target.jump:
        return ["-J", target.jump]
    if target.proxy_command:
        return ["-o", f"ProxyCommand={proxy_command_line(target.proxy_command)}",
                "-o", "ProxyUseFdpass=no"]
    return []


def ssh_option_args(target: SshTarget, key_path: Path, known_hosts: Path) -> list[str]:
    """OpenSSH client options that reach `target` exactly as SshWorkers does (for `tpuctl ssh`).

    `known_hosts` should hold `known_hosts_line(target)` when the target has a host key.
    """
    strict = "yes" if target.host_key else "accept-new"
    return [
        # the worker's SSH port (the emulator serves all workers on one non-22 port)
        "-p", str(target.port),
        # the login user whose key is in the node's ssh-keys metadata
        "-l", target.username,
        # tpuctl's own key, the one it put into the metadata
        "-i", str(key_path),
        # offer only that key: agent/default keys could exhaust the server's MaxAuthTries
        "-o", "IdentitiesOnly=yes",
        # never consult (or forward to) the user's agent
        "-o", "IdentityAgent=none",
        # public key only: no password or keyboard-interactive prompt can appear
        "-o", "PreferredAuthentications=publickey",
        "-o", "PasswordAuthentication=no",
        "-o", "KbdInteractiveAuthentication=no",
        # host keys come from the API's guest attributes, pinned in tpuctl's own file; the
        # user's ~/.ssh/known_hosts is neither read nor modified
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        # a key that differs from the pinned one is refused; with no published key (only
        # then) the first key seen is recorded in that file and pinned from then on
        "-o", f"StrictHostKeyChecking={strict}",
        # don't let the server rewrite the pinned file with extra keys
        "-o", "UpdateHostKeys=no",
        # TPU VM IPs get reused across nodes; identity is the pinned key, not the address
        "-o", "CheckHostIP=no",
        # fail fast on an unreachable worker instead of the TCP default (minutes)
        "-o", "ConnectTimeout=20",
        # notice a dead worker (preempted VM) within a minute instead of hanging forever
        "-o", f"ServerAliveInterval={int(KEEPALIVE_INTERVAL)}",
        "-o", f"ServerAliveCountMax={KEEPALIVE_COUNT_MAX}",
        # a jump host or proxy command (ops/route.py), as SshWorkers goes through it
        *route_args(target),
    ]
