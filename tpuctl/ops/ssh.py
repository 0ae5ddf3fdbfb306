"""`ssh` and `ssh-config`: plain OpenSSH access to workers, with pinned host keys."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from tpuctl import sshkeys
from tpuctl.cloud.base import Cloud
from tpuctl.errors import UsageError
from tpuctl.model import Slice
from tpuctl.naming import validate_node_name
from tpuctl.ops.access import ensure_access, ssh_targets


def ssh_argv(cloud: Cloud, name: str, worker: int, command: Sequence[str]) -> list[str]:
    """The exact OpenSSH argv for an interactive shell (or one command) on one worker."""
    validate_node_name(name)
    if worker < 0:
        raise UsageError(f"invalid --worker {worker}", hint="use a worker index such as 0")
    ssh = shutil.which("ssh")
    if ssh is None:
        raise UsageError("the OpenSSH client (ssh) is not installed",
                         hint="install it, e.g. `apt-get install openssh-client`")
    sl = ensure_access(cloud, name)
    if worker >= len(sl.workers):
        raise UsageError(f"worker {worker} does not exist: {name!r} has {len(sl.workers)} "
                         f"worker(s)", hint=f"use --worker 0..{len(sl.workers) - 1}")
    from tpuctl.workers.ssh import ssh_option_args

    target = ssh_targets(sl, [worker])[0]
    argv = [ssh, *ssh_option_args(target, sshkeys.key_path(), sshkeys.known_hosts_path(sl))]
    if not command:
        argv.append("-t")  # a terminal for the interactive shell, even under `tpuctl` wrappers
    argv.append(target.host)
    if command:
        import shlex

        argv.append(shlex.join(command))
    return argv


def ssh_config_text(cloud: Cloud, name: str) -> str:
    """`Host NAME-wI` blocks for ~/.ssh/config, so plain ssh/scp/rsync/VS Code work."""
    validate_node_name(name)
    sl = ensure_access(cloud, name)
    return render_ssh_config(sl, sshkeys.key_path(), sshkeys.known_hosts_path(sl),
                             sshkeys.ssh_username())


def render_ssh_config(sl: Slice, key: Path, known_hosts: Path, user: str) -> str:
    blocks = []
    for w in sl.workers:
        blocks.append(
            "\n".join([
                f"Host {sl.name}-w{w.index}",
                f"  HostName {w.ip}",
                f"  Port {w.ssh_port}",
                f"  User {user}",
                f"  IdentityFile {key}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {known_hosts}",
                "  StrictHostKeyChecking yes",
                "  ServerAliveInterval 15",
            ])
        )
    header = (f"# tpuctl ssh-config {sl.name} ({sl.accelerator_type}, {sl.project}/{sl.zone});"
              " host keys pinned from the TPU API's guest attributes")
    return header + "\n" + "\n\n".join(blocks) + "\n"
