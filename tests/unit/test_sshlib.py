"""asyncssh is imported without the liboqs probe (ldconfig, gcc, ld subprocesses), and the
post-quantum key exchange tpuctl prefers stays available."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import ctypes.util, json, subprocess
asked, spawned = [], []
real_find, real_popen = ctypes.util.find_library, subprocess.Popen.__init__
ctypes.util.find_library = lambda name: asked.append(name) or real_find(name)
def popen(self, *a, **k):
    spawned.append(str(a[0] if a else k.get("args")))
    return real_popen(self, *a, **k)
subprocess.Popen.__init__ = popen
import tpuctl.workers.ssh as ssh
from asyncssh.kex import get_kex_algs
offered = [a.decode() for a in get_kex_algs()]
import sys
print(json.dumps({"asked": asked, "spawned": spawned,
                  "x509": "asyncssh.crypto.x509" in sys.modules,
                  "ours_supported": [a for a in ssh._KEX_ALGS if a in offered]}))
"""


def test_importing_the_ssh_layer_runs_no_library_probe() -> None:
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert not [n for n in got["asked"] if "oqs" in n or "nettle" in n]
    assert got["spawned"] == []  # no ldconfig / gcc / ld at import
    assert got["ours_supported"][0] == "mlkem768x25519-sha256"  # PQ hybrid still first
    assert got["x509"] is False  # X.509 certificate support is not loaded
