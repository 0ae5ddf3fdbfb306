"""SHA-256 without importing hashlib (OpenSSL's bindings: ~2 ms of a fast-path command).

CPython's own SHA-256 module gives the same digests; hashlib is the fallback where it is
missing. Used by what the fast path (tpuctl/cli/fast/) shares with the full CLI: the worker
cache's file names and key ids, the connection daemon's socket name, the worker scripts' hash.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import sha256
else:
    try:
        from _sha2 import sha256  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256

__all__ = ["sha256", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()
