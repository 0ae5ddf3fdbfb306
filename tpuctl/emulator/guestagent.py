"""Each node's guest agent: which logins its workers accept, and since when.

On GCP the guest agent turns metadata into accounts: `ssh-keys` lines (the node's, plus the
project's unless `block-project-ssh-keys` is TRUE) become `user`'s authorized keys, or, with
`enable-oslogin=TRUE` (node metadata first, else project metadata), only keys imported
through the OS Login API count, under the account's POSIX username. It does so seconds after
a change, so a fresh key is refused ("Permission denied (publickey)") for a while. Here every
change of what a node should accept is a new version, applied `lag x guest-agent-delay`
seconds later (the delay as set at the change; lag drawn from the seeded faults, 0.5..1);
until then the previous version holds, so a removed key also keeps working that long, as on
GCP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tpuctl.emulator.faults import Faults

# (user, "type base64", expiry in microseconds since the epoch or 0 for none)
Login = tuple[str, str, int]


def is_true(value: object) -> bool:
    """Metadata booleans as the guest agent reads them (TRUE/true/1/yes)."""
    return str(value or "").strip().lower() in ("true", "1", "yes", "y")


def oslogin_enabled(node_md: Mapping[str, str], project_md: Mapping[str, str]) -> bool:
    """`enable-oslogin` from the node's metadata, else the project's: the node's wins."""
    if "enable-oslogin" in node_md:
        return is_true(node_md["enable-oslogin"])
    return is_true(project_md.get("enable-oslogin"))


def key_of(text: str) -> str | None:
    """"type base64" of a public key line (options before and a comment after ignored)."""
    tokens = text.split()
    for i, tok in enumerate(tokens[:-1]):
        if tok.startswith(("ssh-", "ecdsa-", "sk-")):
            return f"{tok} {tokens[i + 1]}"
    return None


def metadata_logins(*metadatas: Mapping[str, str]) -> set[Login]:
    """Every `user:key` line of `ssh-keys` (and the legacy `sshKeys`) in these metadata."""
    out: set[Login] = set()
    for md in metadatas:
        for field in ("ssh-keys", "sshKeys"):
            for line in str(md.get(field, "")).splitlines():
                user, sep, rest = line.strip().partition(":")
                key = key_of(rest)
                if sep and user.strip() and key:
                    out.add((user.strip(), key, 0))
    return out


def desired(node_md: Mapping[str, str], project_md: Mapping[str, str],
            oslogin_logins: set[Login]) -> tuple[bool, frozenset[Login]]:
    """(OS Login on?, the logins a node with this metadata should accept)."""
    if oslogin_enabled(node_md, project_md):
        return True, frozenset(oslogin_logins)
    blocked = is_true(node_md.get("block-project-ssh-keys"))
    return False, frozenset(metadata_logins(node_md) if blocked
                            else metadata_logins(node_md, project_md))


@dataclass(frozen=True)
class Version:
    due: float  # time.time() from which it applies
    lag: float  # its share of the delay (0.5..1)
    oslogin: bool
    logins: frozenset[Login]


class GuestAgents:
    """The guest agents of every node, keyed by node name."""

    def __init__(self, faults: Faults, clock: Callable[[], float] = time.time) -> None:
        self._faults = faults
        self._now = clock
        self._versions: dict[str, list[Version]] = {}

    def boot(self, name: str, want: tuple[bool, frozenset[Login]], *,
             applied: bool = False) -> None:
        """A node's workers came up. A new node's agent applies its keys after the delay;
        a node that had booted before (stopped and started, or READY when the emulator
        restarted) has its accounts already."""
        if name in self._versions:
            self.change(name, want)
            return
        self._versions[name] = [self._version(want, applied=applied)]

    def _version(self, want: tuple[bool, frozenset[Login]], *,
                 applied: bool = False) -> Version:
        oslogin, logins = want
        lag = self._faults.guest_agent_lag()
        due = 0.0 if applied else self._now() + lag * self._faults.guest_agent_delay
        return Version(due, lag, oslogin, logins)

    def change(self, name: str, want: tuple[bool, frozenset[Login]]) -> None:
        """Metadata, project metadata or an OS Login profile changed."""
        versions = self._versions.get(name)
        if versions is None:
            return  # not booted yet: boot() takes the metadata as it will be then
        last = versions[-1]
        if (last.oslogin, last.logins) != want:
            versions.append(self._version(want))

    def forget(self, name: str) -> None:
        self._versions.pop(name, None)

    def current(self, name: str) -> Version | None:
        """The newest version already applied; None while even the first one is pending."""
        versions = self._versions.get(name)
        if not versions:
            return None
        now = self._now()
        for i in range(len(versions) - 1, -1, -1):
            v = versions[i]
            if now >= v.due:
                del versions[:i]  # superseded by an applied one: never current again
                return v
        return None

    def authorized(self, name: str, user: str) -> list[str]:
        """The keys worker logins as `user` accept now ("type base64" lines)."""
        v = self.current(name)
        if v is None:
            return []
        now_us = int(self._now() * 1_000_000)
        return [key for u, key, expires in sorted(v.logins)
                if u == user and (not expires or expires > now_us)]

    def oslogin(self, name: str) -> bool:
        """Does the node's guest agent apply OS Login now?"""
        v = self.current(name)
        return bool(v and v.oslogin)
