"""The emulated VMs of a node: each worker's loopback address, home, login environment and
SSH listener; commands really run (bash on this machine) with the env a TPU VM worker would
give a JAX job, except that devices are CPUs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tpuctl.emulator.processes import NODE_ENV
from tpuctl.emulator.sshserver import listen
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

AuthorizedKeys = Callable[[str], list[str]]


class SshFaults(Protocol):
    """The SSH side of `faults.Faults`: whether to refuse a connection, when to cut one."""

    def refuse_ssh(self) -> bool: ...

    def ssh_drop_delay(self) -> float | None: ...


def worker_ip(slot: int, index: int) -> str:
    """Loopback address of worker `index` of the node in `slot` (all of 127/8 routes to lo)."""
    if not 1 <= slot <= 255:
        raise ValueError(f"slot must be in 1..255 (127.0.x.x would overlap localhost), got {slot}")
    if not 0 <= index < 250 * 256:
        raise ValueError(f"worker index out of range: {index}")
    return f"127.{slot}.{index // 250}.{index % 250 + 1}"


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
    workers: list[VmWorker] = field(default_factory=list)
    pgids: set[int] = field(default_factory=set)  # process groups of live direct children
    stopping: bool = False


@dataclass(eq=False)


class VmWorker:
    node: VmNode
    index: int
    ip: str
    port: int
    home: Path
    host_key: asyncssh.SSHKey
    public_key: str
    uv_cache: Path
    listener: asyncssh.SSHAcceptor | None = None
    reachable: bool = True
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    accepted: int = 0

    def public(self) -> EmulatedWorker:
        return EmulatedWorker(self.index, self.ip, self.port, self.public_key)

    def env(self, username: str, client_env: dict[str, str]) -> dict[str, str]:
        """A clean env, as sshd gives a login: nothing leaks from the emulator except PATH."""
        env = {k: os.environ[k] for k in _HOST_NETWORK_ENV if k in os.environ}
        env.update({
            k: v
            for k, v in client_env.items()
            if k in _CLIENT_ENV_NAMES or k.startswith(_CLIENT_ENV_PREFIXES)
        })
        env.update(
            HOME=str(self.home),
            USER=username,
            LOGNAME=username,
            SHELL="/bin/bash",
            # the interpreters `uv python install` would give a real image, from this machine
            # (tpuctl/emulator/pythons.py); uv never downloads one here
            PATH=os.pathsep.join((str(self.uv_cache.parent / PYTHONS_DIR), image_path())),
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
        )
        self._ensure_devices()
        env[NODE_ENV] = self.node.node_id  # last: a client can never override the kill marker
        return env

    def _ensure_devices(self) -> None:
        dev = self.home.parent / "dev"
        if not dev.is_dir():
            dev.mkdir(parents=True, exist_ok=True)
            for i in range(self.node.chips_per_host):
                (dev / f"accel{i}").touch()
        (self.home.parent / "tmp").mkdir(exist_ok=True)

    async def open_listener(self) -> None:
        self.listener = await listen(self)

    def close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def drop_connections(self) -> None:
        for conn in list(self.connections):
            conn.abort()
