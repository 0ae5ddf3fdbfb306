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
    import sys

    try:  # the right one first: a failed import searches every sys.path entry (~0.2 ms)
        if sys.version_info >= (3, 12):
            from _sha2 import sha256
        else:
            from _sha256 import sha256
    except ImportError:
        from hashlib import sha256

__all__ = ["sha256", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()
