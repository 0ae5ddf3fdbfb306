"""Worker-side scripts (bash, `set -euo pipefail`, and the Python program `tpu_metrics.py`
that `top.sh` runs), shipped in the wheel, installed per worker under
~/.tpuctl/bin/<content-hash>/ and called with short quoted arguments.

Data sent over stdin (secrets, requirements, a run's command and env) travels as one `frame`:
the scripts (lib.sh: read_framed) check its length and checksum before it replaces anything,
so a cut connection never passes for the whole input."""

from __future__ import annotations

import hashlib
import io
import tarfile
from functools import lru_cache
from importlib import resources

# Python programs the scripts run on workers (stdlib only, any Python 3.8+)
WORKER_PROGRAMS = ("tpu_metrics.py",)


@lru_cache(maxsize=1)
def bundle() -> tuple[str, bytes]:
    """(content hash, gzipped tar of every script): identical scripts, identical hash."""
    files = sorted(
        (p.name, p.read_bytes())
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".sh") or p.name in WORKER_PROGRAMS
    )
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0" + data + b"\0")
    h = digest.hexdigest()[:16]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return h, buf.getvalue()


FRAME_MAGIC = b"tpuctl-frame 1"
FRAME_ERROR = 65  # a worker script's exit status for a short, corrupted or foreign frame


def frame(payload: bytes) -> bytes:
    """`tpuctl-frame 1 LENGTH SHA256\\n` then the payload (read by lib.sh's read_framed)."""
    digest = hashlib.sha256(payload).hexdigest()
    return FRAME_MAGIC + f" {len(payload)} {digest}\n".encode() + payload
