"""The emulated VMs of a node: each worker's loopback address, home, login environment and
SSH listener; commands really run (bash on this machine) with the env a TPU VM worker would
give a JAX job, except that devices are CPUs."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tpuctl.emulator import addressing, image
from tpuctl.emulator.image import IMAGE_BIN
from tpuctl.emulator.processes import NODE_ENV
from tpuctl.emulator.sshserver import listen
from tpuctl.emulator.workerfaults import Acted
from tpuctl.workers.sshlib import asyncssh

# Env vars a client may set through SSH "env" requests (OpenSSH's AcceptEnv default spirit).
_CLIENT_ENV_NAMES = frozenset({"LANG", "TERM"})
# The host's network configuration reaches emulated workers as a VM image would carry it:
# proxies, CA bundles and package-index settings (never credentials of the emulator's user).
_HOST_NETWORK_ENV = (
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT",
    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT", "UV_FIND_LINKS",
)
_CLIENT_ENV_PREFIXES = ("LC_",)
PYTHONS_DIR = "python-bin"  # under the state dir: python3.N links offered to every worker
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")

AuthorizedKeys = Callable[[str], list[str]]

OSLOGIN_HOMES = "users"  # per worker: homes of OS Login accounts, by POSIX username
HOLD_SECONDS = 300.0
_POSIX_NAME = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,31}$")


class SshFaults(Protocol):
    """The SSH side of `faults.Faults`: whether to refuse a connection, when to cut one."""

    def refuse_ssh(self) -> bool: ...

    def ssh_drop_delay(self) -> float | None: ...


class World(Protocol):
    """What a worker asks the rest of the emulator while it runs (fabric.Fabric answers):
    the network mode, who may reach it, where a login's home is, its worker faults."""

    def cloud_network(self) -> bool: ...

    def external_ips(self, node_id: str) -> bool: ...

    def may_reach(self, node_id: str, source_ip: str) -> bool: ...

    def oslogin_user(self, node_id: str, username: str) -> bool: ...

    def metadata_host(self, node_id: str, index: int) -> str | None: ...

    def stuck(self, node_id: str, index: int) -> bool: ...

    def skew(self, node_id: str, index: int) -> list[str]: ...


def worker_ip(slot: int, index: int) -> str:
    """Loopback address of worker `index` of the node in `slot` (all of 127/8 routes to lo):
    its internal address (addressing.py)."""
    return addressing.internal_ip(slot, index)


def with_sbin(path: str) -> str:
    """Ubuntu's login PATH (/etc/environment) has the sbin directories (mkfs.ext4, blkid),
    where Debian's user PATH may not."""
    parts = path.split(os.pathsep)
    return os.pathsep.join(parts + [d for d in SBIN if d not in parts])


@dataclass(frozen=True)
class EmulatedWorker:
    """What the REST side publishes about a worker (network endpoint + host key attribute)."""

    index: int
    ip: str
    ssh_port: int
    host_key: str  # OpenSSH public key line "ssh-ed25519 AAAA..."


def image_path() -> str:
    """The machine's PATH without the emulator's own virtualenv: a worker is a VM image with
    the system's tools, not a shell inside tpuctl's venv (whose python refuses --user)."""
    own = os.path.join(sys.prefix, "bin") if sys.prefix != sys.base_prefix else None
    venv = os.environ.get("VIRTUAL_ENV")
    drop = {p for p in (own, os.path.join(venv, "bin") if venv else None) if p}
    parts = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
             if p and os.path.normpath(p) not in {os.path.normpath(d) for d in drop}]
    return os.pathsep.join(parts) or os.defpath


@dataclass(eq=False)
class VmNode:
    node_id: str
    slot: int
    chips_per_host: int
    authorized_keys: AuthorizedKeys
    kill_grace: float = 2.0
    faults: Callable[[], SshFaults | None] = lambda: None
    world: Callable[[], World | None] = lambda: None
    workers: list[VmWorker] = field(default_factory=list)
    pgids: set[int] = field(default_factory=set)  # process groups of live direct children
    stopping: bool = False
    startup: list[asyncio.Task[None]] = field(default_factory=list)  # startup.py, per boot
    marker: str = ""  # processes.node_marker: what its processes carry in NODE_ENV


@dataclass(eq=False)
class VmWorker:
    node: VmNode
    index: int
    ip: str  # internal (the only one in the flat network mode)
    port: int
    home: Path
    host_key: asyncssh.SSHKey
    public_key: str
    uv_cache: Path
    external_ip: str | None = None  # where its external listener would listen (cloud mode)
    listener: asyncio.AbstractServer | None = None
    ext_listener: asyncio.AbstractServer | None = None
    reachable: bool = True
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    held: set[asyncio.BaseTransport] = field(default_factory=set)  # refused, left hanging
    acted: Acted = field(default_factory=Acted)  # faults acted out on it (workerfaults.py)
    accepted: int = 0

    def public(self) -> EmulatedWorker:
        return EmulatedWorker(self.index, self.ip, self.port, self.public_key)

    @property
    def image_bin(self) -> Path:
        """First on PATH: the image's own commands (whoami) and faults' test doubles."""
        return self.home.parent / IMAGE_BIN

    def home_for(self, username: str) -> Path:
        """The login's home: the worker's one home, or for an OS Login account (a POSIX
        username, checked before it names a directory) a home of its own, as on GCP."""
        world = self.node.world()
        if world is None or not _POSIX_NAME.match(username) or not world.oslogin_user(
            self.node.node_id, username
        ):
            return self.home
        home = self.home.parent / OSLOGIN_HOMES / username
        if not home.is_dir():
            home.mkdir(parents=True, exist_ok=True)
            home.parent.chmod(0o700)
            home.chmod(0o700)
        return home

    def env(self, username: str, client_env: dict[str, str]) -> dict[str, str]:
        """A clean env, as sshd gives a login: nothing leaks from the emulator except PATH."""
        env = {k: os.environ[k] for k in _HOST_NETWORK_ENV if k in os.environ}
        env.update({
            k: v
            for k, v in client_env.items()
            if k in _CLIENT_ENV_NAMES or k.startswith(_CLIENT_ENV_PREFIXES)
        })
        env.update(
            HOME=str(self.home_for(username)),
            USER=username,
            LOGNAME=username,
            SHELL="/bin/bash",
            # the image's own commands and faults' test doubles first, then the interpreters
            # `uv python install` would give a real image, from this machine
            # (tpuctl/emulator/pythons.py); uv never downloads one here
            PATH=os.pathsep.join((str(self.image_bin), str(self.uv_cache.parent / PYTHONS_DIR),
                                  with_sbin(image_path()))),
            UV_PYTHON_DOWNLOADS="never",
            LANG=client_env.get("LANG", "C.UTF-8"),
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={self.node.chips_per_host}",
            TPU_WORKER_ID=str(self.index),
            TPUCTL_EMULATOR="1",
            UV_CACHE_DIR=str(self.uv_cache),
            # one pip cache too: bootstrap installs uv with pip once per worker home
            PIP_CACHE_DIR=str(self.uv_cache.parent / "pip-cache"),
            # each worker gets its own emulated TPU device files and libtpu lockfile, so the
            # busy check sees only its own holders although workers share one kernel
            TPUCTL_TPU_DEVICES=str(self.home.parent / "dev" / "accel*"),
            TPUCTL_LIBTPU_LOCKFILE=str(self.home.parent / "tmp" / "libtpu_lockfile"),
            # where this worker's /dev, /mnt, /tmp and /var/log are (image.py)
            TPUCTL_EMULATOR_ROOT=str(self.root),
        )
        world = self.node.world()
        metadata = world.metadata_host(self.node.node_id, self.index) if world else None
        if metadata:  # the worker's metadata server (metadata.py), where JAX and google-auth look
            env.update(GCE_METADATA_HOST=metadata, GCE_METADATA_IP=metadata)
        self.ensure_image()
        from tpuctl.emulator.tpumetrics import worker_env  # its TPU metrics (tpumetrics.py)

        env.update(worker_env(self))
        env[NODE_ENV] = self.node.marker  # last: a client can never override the kill marker
        return env

    @property
    def root(self) -> Path:
        """The worker's root: its /dev, /tmp, /mnt, /var/log (image.py)."""
        return self.home.parent

    def ensure_image(self) -> None:
        """The worker's device files, its /tmp and the image's own commands."""
        image.ensure(self.root, self.node.chips_per_host)

    # -- who may connect ------------------------------------------------------------------------
    def admits(self, source_ip: str, *, external: bool) -> bool:
        """Does a TCP connection from `source_ip` get an SSH server? On the external address,
        and in the flat network mode, always; on the internal one in the cloud mode, only from
        inside the node's VPC (another worker, the bastion, the IAP stand-in)."""
        world = self.node.world()
        if external or world is None or not world.cloud_network():
            return True
        return world.may_reach(self.node.node_id, source_ip)

    def hold(self, transport: asyncio.BaseTransport) -> None:
        """A connection the VPC does not route: no answer at all (the client times out, as
        on GCP), until the client gives up, the listener closes or HOLD_SECONDS pass."""
        self.held.add(transport)
        asyncio.get_running_loop().call_later(HOLD_SECONDS, self.release, transport)

    def release(self, transport: asyncio.BaseTransport) -> None:
        self.held.discard(transport)
        transport.abort() if isinstance(transport, asyncio.Transport) else transport.close()

    async def open_listener(self) -> None:
        self.listener = await listen(self, self.ip, external=False)
        await self.sync_external()

    async def sync_external(self) -> None:
        """An external listener exactly when the node has external IPs in the cloud mode."""
        world = self.node.world()
        want = (
            self.reachable and self.listener is not None and self.external_ip is not None
            and world is not None and world.cloud_network()
            and world.external_ips(self.node.node_id)
        )
        if want and self.ext_listener is None and self.external_ip is not None:
            self.ext_listener = await listen(self, self.external_ip, external=True)
        elif not want and self.ext_listener is not None:
            self.ext_listener.close()
            self.ext_listener = None

    def close_listener(self) -> None:
        for server in (self.listener, self.ext_listener):
            if server is not None:
                server.close()
        self.listener = self.ext_listener = None
        for transport in list(self.held):
            self.release(transport)

    def drop_connections(self) -> None:
        for conn in list(self.connections):
            conn.abort()
