"""tpuctl's own SSH identity (one ed25519 key per user) and per-node pinned host keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tpuctl.errors import ConfigError
from tpuctl.model import Slice
from tpuctl.naming import ssh_username
from tpuctl.paths import KEY_NAME, known_hosts_file, private_dir, ssh_dir

__all__ = ["KEY_NAME", "check_private_key", "ensure_key", "key_path", "known_hosts_path",
           "merge_ssh_keys", "ssh_keys_entry", "ssh_username", "write_known_hosts"]



def key_path() -> Path:
    return ssh_dir() / KEY_NAME


def check_private_key(path: Path) -> None:
    """Refuse a private key others can read (or that is not ours), as OpenSSH does, but
    with the fix in the hint rather than a silent failure later."""
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ConfigError(f"SSH key {path} belongs to uid {st.st_uid}, not to you",
                          hint=f"remove it (tpuctl makes a new one), or `chown {os.getuid()} "
                          f"{path}` if it is yours")
    if st.st_mode & 0o077:
        raise ConfigError(f"SSH key {path} is readable by others (mode "
                          f"{stat.S_IMODE(st.st_mode):o}): refusing to use it",
                          hint=f"`chmod 600 {path}`")


def ensure_key() -> tuple[Path, str]:
    """Return (private key path, public key line), generating the key once, mode 0600, in
    a 0700 directory (with `cryptography`, in OpenSSH's format: no SSH library needed); an
    existing key readable by others is refused."""
    path = key_path()
    pub_path = path.with_suffix(".pub")
    if path.is_file() and pub_path.is_file():
        private_dir(path.parent)  # ~/.tpuctl of earlier versions was 0755: tighten it
        check_private_key(path)
        return path, pub_path.read_text().strip()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_dir(path.parent)
    key = Ed25519PrivateKey.generate()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption()))
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH).decode() + " tpuctl"
    pub_path.write_text(pub + "\n")
    os.replace(tmp, path)
    return path, pub


def ssh_keys_entry(user: str, pub: str) -> str:
    """One line of the node's `ssh-keys` metadata, in GCP's `user:key comment` format."""
    return f"{user}:{pub}"


def merge_ssh_keys(existing: str, entry: str) -> str:
    lines = [ln for ln in existing.splitlines() if ln.strip()]
    if entry in lines:
        return existing
    return "\n".join([*lines, entry])


def known_hosts_path(sl: Slice) -> Path:
    return Path(known_hosts_file(sl.project, sl.zone, sl.name))


def write_known_hosts(sl: Slice) -> Path:
    """Pin every worker's host key (from guest attributes) in a file of this node's own.

    One file per node, rewritten from the API each time: addresses are reused across nodes,
    so a shared known_hosts would mix up keys of a deleted and a new node.
    """
    from tpuctl.workers.base import SshTarget
    from tpuctl.workers.openssh import known_hosts_line

    path = known_hosts_path(sl)
    private_dir(path.parent)
    # each key under both of the worker's addresses: OpenSSH looks it up by the address it
    # connects to, the external one directly, the internal one through a jump or a proxy
    lines = [
        known_hosts_line(SshTarget(w.index, ip, w.ssh_port, "", w.host_key))
        for w in sl.workers if w.host_key
        for ip in (w.ip, w.external_ip) if ip
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)
    return path
