"""The SSH server side of an emulated worker: its persistent host key, public-key-only
auth against the node's current `ssh-keys`, and the sessions it accepts."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tpuctl.emulator.sessions import Session
from tpuctl.workers.sshlib import asyncssh

if TYPE_CHECKING:
    from tpuctl.emulator.vms import VmWorker

log = logging.getLogger(__name__)

HOST_KEY_FILE = "ssh_host_ed25519_key"


def key_id(line: str) -> tuple[str, str] | None:
    """(type, base64 blob) of an authorized_keys/metadata line; options and comments ignored."""
    tokens = line.split()
    for i, tok in enumerate(tokens[:-1]):
        if tok.startswith(("ssh-", "ecdsa-", "sk-")):
            return tok, tokens[i + 1]
    return None


def public_line(key: asyncssh.SSHKey) -> str:
    """"type base64" without a comment: the form guest attributes publish."""
    ident = key_id(key.export_public_key("openssh").decode())
    assert ident is not None
    return f"{ident[0]} {ident[1]}"


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Host keys persist so a restarted emulator or a stop/start keeps the pinned identity."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written key behind
    path.with_name(path.name + ".pub").write_text(public_line(key) + "\n")
    return key


class WorkerServer(asyncssh.SSHServer):
    """Public-key-only auth against the node's current `ssh-keys` (asked at every login)."""

    def __init__(self, worker: VmWorker) -> None:
        self._worker = worker
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._worker.accepted += 1
        self._worker.connections.add(conn)
        if self._worker.node.stopping or not self._worker.reachable:
            conn.abort()
            return
        faults = self._worker.node.faults()
        if faults is not None and faults.refuse_ssh():
            log.info("fault: refusing an SSH connection to %s", self._worker.ip)
            conn.abort()  # before the version exchange: the client sees the connection lost

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._worker.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # auth is always required

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        """direct-tcpip (`ssh -L`, `tpuctl forward`), as sshd allows it: here only to
        loopback destinations, since every emulated worker's network is this machine's."""
        try:
            return ipaddress.ip_address(dest_host).is_loopback
        except ValueError:
            return dest_host == "localhost"

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        offered = key_id(key.export_public_key("openssh").decode())
        try:
            lines = self._worker.node.authorized_keys(username)
        except Exception:
            log.exception("authorized_keys(%r) failed; refusing", username)
            return False
        return offered is not None and any(key_id(line) == offered for line in lines)

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        assert self._conn is not None
        return Session(self._worker, self._conn.get_extra_info("username"))


async def listen(worker: VmWorker) -> asyncssh.SSHAcceptor:
    """Open the worker's SSH listener on its own address (the node's one shared port)."""
    return await asyncssh.listen(
        host=worker.ip,
        port=worker.port,
        server_factory=lambda: WorkerServer(worker),
        server_host_keys=[worker.host_key],
        encoding=None,  # bytes end to end: commands' output is not ours to decode
        line_editor=False,  # a real pty does the line editing, not asyncssh
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        login_timeout=30,
        reuse_address=True,
        # asyncssh re-evaluates these on every login: skip the FQDN lookup (GSSAPI) and
        # the X.509 trust-store probes, which this server never uses
        gss_host=None,
        x509_trusted_certs=None,
        x509_trusted_cert_paths=None,
    )
