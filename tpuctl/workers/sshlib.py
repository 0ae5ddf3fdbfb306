"""asyncssh, imported without its shared-library probes.

At import, asyncssh looks for liboqs (sntrup761 key exchange) and libnettle (UMAC MACs) with
ctypes.util.find_library, which on Linux runs `ldconfig -p`, then gcc and ld for a library
that is absent: about 25 ms of subprocesses on every tpuctl command that connects to workers
(measured here; more on a loaded machine). tpuctl offers neither sntrup761
(`workers/ssh.py: _KEX_ALGS`) nor UMAC (its ciphers are AEAD), and its post-quantum key
exchange, ML-KEM, comes from `cryptography`; so the probes are answered "absent" for the
duration of the import. Its optional X.509 certificate support (~15 ms of imports, unused:
host keys are pinned ed25519 keys) is left out the same way asyncssh handles its absence.
Import asyncssh from here: `from tpuctl.workers.sshlib import asyncssh`.
"""

from __future__ import annotations

import ctypes.util
import sys

_SKIPPED = ("oqs", "nettle")  # asked for as oqs, liboqs, nettle, libnettle, libnettle-6

if "asyncssh" not in sys.modules:
    _find_library = ctypes.util.find_library

    def _without_probes(name: str) -> str | None:
        base = name.removeprefix("lib").split("-", 1)[0]
        return None if base in _SKIPPED else _find_library(name)

    ctypes.util.find_library = _without_probes
    _x509 = "asyncssh.crypto.x509"
    _had_x509 = _x509 in sys.modules
    sys.modules.setdefault(_x509, None)  # type: ignore[arg-type]  # -> asyncssh's ImportError path
    try:
        import asyncssh as asyncssh
    finally:
        ctypes.util.find_library = _find_library
        if not _had_x509 and sys.modules.get(_x509) is None:
            del sys.modules[_x509]
else:
    import asyncssh as asyncssh

__all__ = ["asyncssh"]
