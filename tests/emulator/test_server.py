"""`serve` as a process: emulator.json while listening, graceful exit on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SCRIPT = """
import asyncio, sys
from pathlib import Path
from tpuctl.emulator.server import serve
asyncio.run(serve(0, Path(sys.argv[1]), on_ready=lambda ep: print(ep, flush=True)))
"""


def test_serve_writes_info_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        info = json.loads((tmp_path / "emulator.json").read_text())
        assert info["endpoint"] == endpoint and info["pid"] == proc.pid
        token = (tmp_path / "token").read_text().strip()
        assert info["token"] == token and len(token) >= 32
        for f in ("token", "emulator.json"):
            assert (tmp_path / f).stat().st_mode & 0o777 == 0o600, f
        assert tmp_path.stat().st_mode & 0o777 == 0o700
        req = urllib.request.Request(f"{endpoint}/emulator/v1/status",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            status = json.loads(resp.read())
        assert "token" not in status
        assert status["ssh_port"] == info["ssh_port"] > 0 and status["nodes"] == []
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not (tmp_path / "emulator.json").exists()
        assert not (tmp_path / "token").exists()  # a stopped emulator's token is gone
        assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
