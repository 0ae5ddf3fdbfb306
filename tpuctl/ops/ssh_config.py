"""`ssh-config`'s text: `Host NAME-wI` blocks for ~/.ssh/config, so plain ssh/scp/rsync/VS
Code reach workers with tpuctl's key and the host keys pinned from the API. Light (the fast
path draws it too): plain values in, text out."""

from __future__ import annotations

import re

from tpuctl import validate
from tpuctl.errors import UsageError
from tpuctl.naming import validate_node_name
from tpuctl.paths import known_hosts_file as known_hosts_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _quoted(value: str, what: str) -> str:
    """A path as one double-quoted ssh_config argument; refused if it could end the line or
    the quotes (it would add directives of its own)."""
    if not value.isprintable() or '"' in value:
        raise UsageError(f"{what} {value!r} cannot be written to an ssh config",
                         hint="use a HOME without quotes or control characters")
    return f'"{value}"'


# One worker's block: (host alias, address, port, login user, jump host or None, ProxyCommand
# line or None); the alias is `NAME-wI` or `NAME-sS-wW` (ops/ssh.py:host_alias).
WorkerBlock = tuple[str, str, int, str, "str | None", "str | None"]


def render_ssh_config(*, name: str, accelerator_type: str, project: str, zone: str,
                      workers: Sequence[WorkerBlock], key: str, known_hosts: str) -> str:
    """Only validated values go in: a value from the API could otherwise add its own
    directives (a `ProxyCommand` runs a command here). The jump host and proxy command line
    come checked from ops/route.py (parse_jump; workers/openssh.py:proxy_command_line).
    ValueError names a bad value from the API; UsageError a local path or user name that
    cannot be written."""
    validate_node_name(name)
    blocks = []
    for alias, ip, port, user, jump, proxy in workers:
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", user):
            raise UsageError(f"invalid user name {user!r}", hint="see `tpuctl ssh --print`")
        if not re.fullmatch(re.escape(name) + r"-(?:s[0-9]+-)?w[0-9]+", alias):
            raise ValueError(f"host alias {alias!r}")
        lines = [
            f"Host {alias}",
            f"  HostName {validate.ip_address(ip)}",
            f"  Port {validate.port(port)}",
            f"  User {user}",
            f"  IdentityFile {_quoted(key, 'key path')}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {_quoted(known_hosts, 'known_hosts path')}",
            "  StrictHostKeyChecking yes",
            "  ServerAliveInterval 15",
        ]
        if jump:
            lines.append(f"  ProxyJump {jump}")
        elif proxy:
            lines.append(f"  ProxyCommand {proxy}")
        blocks.append("\n".join(lines))
    header = (f"# tpuctl ssh-config {name} ({validate.plain_name(accelerator_type, 'type')}"
              f", {validate.project(project)}/{validate.zone(zone)});"
              " host keys pinned from the TPU API's guest attributes")
    return header + "\n" + "\n\n".join(blocks) + "\n"
