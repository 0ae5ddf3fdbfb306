"""A jump host (bastion) inside the emulated VPC, as a user runs one on GCP: an SSH server on
an external address that accepts the keys it was given and forwards `direct-tcpip` channels
(OpenSSH's `-J`/ProxyJump, asyncssh's `tunnel=`) to internal addresses of its network only,
opening them from its own internal address so the workers' internal listeners let them in.
It runs no shell: a jump host only.

Configured by the admin call `POST /emulator/v1/bastion` (`authorizedKeys`: public key lines,
and/or `authorizedKeysFile`: a path the emulator reads; `network`: the network it sits in,
`projects/P/global/networks/N`, or absent for every network), read by GET, removed by
DELETE. Its settings are saved with the state; it has an address block (slot) of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from tpuctl.emulator import addressing, netconfig
from tpuctl.emulator.core import Core
from tpuctl.emulator.errors import ApiError, invalid_argument, not_found
from tpuctl.emulator.fabric import Peer
from tpuctl.emulator.guestagent import key_of
from tpuctl.emulator.sshserver import forward_from, load_or_create_host_key, public_line
from tpuctl.workers.sshlib import asyncssh

log = logging.getLogger(__name__)

HOST_KEY = Path("bastion") / "ssh_host_ed25519_key"


class _BastionServer(asyncssh.SSHServer):
    def __init__(self, bastion: Bastion) -> None:
        self._bastion = bastion

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key_of(key.export_public_key("openssh").decode()) in self._bastion.keys()

    def session_requested(self) -> bool:
        return False  # no shell, no commands: a jump host only

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool | Awaitable[asyncssh.SSHTCPSession[bytes]]:
        return self._bastion.forward(dest_host, dest_port)


class Bastion:
    """The emulator's one bastion, started, reconfigured and stopped by admin calls."""

    def __init__(self, core: Core, ssh_port: int) -> None:
        self._core = core
        self._port = ssh_port
        self._server: asyncssh.SSHAcceptor | None = None
        self._host_key: asyncssh.SSHKey | None = None

    @property
    def _settings(self) -> dict[str, Any] | None:
        return self._core.store.bastion

    def keys(self) -> set[str]:
        return set((self._settings or {}).get("authorizedKeys", []))

    def forward(self, dest_host: str, dest_port: int
                ) -> bool | Awaitable[asyncssh.SSHTCPSession[bytes]]:
        """Only to internal addresses of its network, from its own internal address."""
        settings = self._settings
        network = self._core.fabric.internal_of(dest_host)
        if settings is None or network is None or (
            settings.get("network") and settings["network"] != network
        ):
            log.info("bastion: no route to %s:%d", dest_host, dest_port)
            return False
        return forward_from(addressing.internal_ip(int(settings["slot"]), 0), dest_host,
                            dest_port)

    def info(self) -> dict[str, Any]:
        settings = self._settings
        if settings is None or self._host_key is None:
            raise not_found("emulator/v1/bastion")
        slot = int(settings["slot"])
        return {
            "host": addressing.external_ip(slot, 0),
            "port": self._port,
            "internalIp": addressing.internal_ip(slot, 0),
            "hostKey": public_line(self._host_key),
            "network": settings.get("network"),
            "authorizedKeys": sorted(self.keys()),
        }

    def _parse(self, body: dict[str, Any]) -> tuple[list[str], str | None]:
        lines = body.get("authorizedKeys", [])
        if isinstance(lines, str):
            lines = lines.splitlines()
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise invalid_argument("authorizedKeys must be a list of public key lines")
        if body.get("authorizedKeysFile"):
            try:
                lines = lines + Path(str(body["authorizedKeysFile"])).read_text().splitlines()
            except OSError as e:
                raise invalid_argument(f"cannot read authorizedKeysFile: {e.strerror}") from e
        keys = []
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                key = key_of(line)
                if key is None:
                    raise invalid_argument(f"not a public key line: {line[:40]!r}")
                keys.append(key)
        if not keys:
            raise invalid_argument("the bastion needs at least one authorized key")
        network = body.get("network")
        if network is not None:
            if not isinstance(network, str) or not network.startswith(("projects/", "https:")):
                raise invalid_argument(
                    "network must be a full network name: projects/P/global/networks/N")
            network = netconfig.network_name(network, "", "network")
        return sorted(set(keys)), network

    async def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start the bastion, or give it new keys and a new network."""
        unknown = sorted(set(body) - {"authorizedKeys", "authorizedKeysFile", "network"})
        if unknown:
            raise invalid_argument(f"unknown bastion field {unknown[0]!r}")
        keys, network = self._parse(body)
        settings = dict(self._settings or {})
        if "slot" not in settings:
            slot = self._core.store.allocate_slot()
            if slot is None:
                raise ApiError(429, "RESOURCE_EXHAUSTED", "no address block left for a bastion")
            settings["slot"] = slot
        settings.update(authorizedKeys=keys, network=network)
        self._core.store.bastion = settings
        await self.start()
        self._core.save()
        return self.info()

    async def start(self) -> None:
        """Listen (again) with the saved settings; nothing when there are none."""
        settings = self._settings
        if settings is None:
            return
        slot = int(settings["slot"])
        self._core.fabric.bastion = Peer(addressing.internal_ip(slot, 0), settings.get("network"))
        if self._server is not None:
            return
        self._host_key = load_or_create_host_key(self._core.store.state_dir / HOST_KEY)
        self._server = await asyncssh.listen(
            host=addressing.external_ip(slot, 0), port=self._port,
            server_factory=lambda: _BastionServer(self), server_host_keys=[self._host_key],
            reuse_address=True, allow_scp=False, agent_forwarding=False, x11_forwarding=False,
            login_timeout=30, gss_host=None, x509_trusted_certs=None,
            x509_trusted_cert_paths=None,
        )

    async def stop(self, *, forget: bool = False) -> None:
        """Stop listening; with `forget`, remove its settings too (DELETE)."""
        if forget and self._settings is None:
            raise not_found("emulator/v1/bastion")
        if self._server is not None:
            self._server.close()
            self._server = None
        if forget:
            self._core.store.bastion = None
            self._core.fabric.bastion = None
            self._core.save()
