"""The SSH server side of an emulated worker: its persistent host key, public-key-only
auth against the keys its guest agent applied, the sessions and forwardings it accepts, and
its listeners, which decide before any SSH byte is sent whether a connection gets a server
at all (a VPC-internal address answers nobody outside the VPC)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Awaitable
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
                             orig_port: int) -> bool | Awaitable[asyncssh.SSHTCPSession[bytes]]:
        """direct-tcpip (`ssh -L`, `tpuctl forward`, a jump through this worker), as sshd
        allows it: here only to loopback destinations, since every emulated worker's network
        is this machine's; opened from the worker's own internal address, as a VM's would be,
        so other workers of its VPC let it in."""
        try:
            if not ipaddress.ip_address(dest_host).is_loopback:
                return False
        except ValueError:
            if dest_host != "localhost":
                return False
        return forward_from(self._worker.ip, dest_host, dest_port)

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


async def forward_from(source_ip: str, dest_host: str,
                       dest_port: int) -> asyncssh.SSHTCPSession[bytes]:
    """A direct-tcpip channel's TCP connection, opened from `source_ip` (a machine's own
    address in the emulated VPC, so internal listeners let it in)."""
    from asyncssh.forward import SSHForwarder

    loop = asyncio.get_running_loop()
    try:
        _, peer = await loop.create_connection(SSHForwarder, dest_host, dest_port,
                                               local_addr=(source_ip, 0))
    except OSError as exc:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
    return SSHForwarder(peer)  # type: ignore[return-value]


class _Gate(asyncio.Protocol):
    """Each accepted TCP connection, before any SSH byte: an SSH server when the worker
    admits its source address, else silence (held until the client gives up)."""

    def __init__(self, worker: VmWorker, options: asyncssh.SSHServerConnectionOptions,
                 external: bool) -> None:
        self._worker = worker
        self._options = options
        self._external = external
        self._held: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if not peer or not self._worker.admits(str(peer[0]), external=self._external):
            log.info("%s: no route from %s (outside the VPC)", self._worker.ip, peer)
            if isinstance(transport, asyncio.ReadTransport):
                transport.pause_reading()
            self._held = transport
            self._worker.hold(transport)
            return
        conn = asyncssh.SSHServerConnection(asyncio.get_running_loop(), self._options)
        transport.set_protocol(conn)
        conn.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._held is not None:  # a held connection the client gave up on
            self._worker.held.discard(self._held)


def server_options(worker: VmWorker) -> asyncssh.SSHServerConnectionOptions:
    return asyncssh.SSHServerConnectionOptions(
        server_factory=lambda: WorkerServer(worker),
        server_host_keys=[worker.host_key],
        encoding=None,  # bytes end to end: commands' output is not ours to decode
        line_editor=False,  # a real pty does the line editing, not asyncssh
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        login_timeout=30,
        # asyncssh re-evaluates these on every login: skip the FQDN lookup (GSSAPI) and
        # the X.509 trust-store probes, which this server never uses
        gss_host=None,
        x509_trusted_certs=None,
        x509_trusted_cert_paths=None,
    )


async def listen(worker: VmWorker, host: str, *, external: bool) -> asyncio.AbstractServer:
    """Open one of the worker's SSH listeners on `host` (the node's one shared port)."""
    options = server_options(worker)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Gate(worker, options, external), host,
                                    worker.port, reuse_address=True, backlog=100)
