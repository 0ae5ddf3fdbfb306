"""Runs recipes/programs/train.py for real: one process, then an emulated v6e-16
(4 processes x 4 CPU devices, coordinated over 127.0.0.1), then a bad config."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("jax")
import numpy as np  # after the skip: numpy comes with jax

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "recipes" / "programs" / "train.py"
CONFIG = REPO / "recipes" / "programs" / "configs" / "quickstart.yaml"
STEP_RE = re.compile(r"^step=(\d+) loss=([0-9.]+) examples_per_sec=([0-9.]+)$", re.M)


def _env(run_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TPUCTL_", "JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", TPUCTL_RUN_DIR=str(run_dir), **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_training(out: str, run_dir: Path) -> None:
    steps = [(int(s), float(loss)) for s, loss, _ in STEP_RE.findall(out)]
    assert len(steps) >= 2, out
    assert steps[-1][1] < 0.5 * steps[0][1], f"loss did not fall: {steps}"
    ckpt = run_dir / "checkpoint"
    assert f"checkpoint written to {ckpt}" in out
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["step"] == steps[-1][0]
    assert meta["final_loss"] == pytest.approx(steps[-1][1], abs=1e-4)
    with np.load(ckpt / "params.npz") as params:
        assert "layer0_w" in params.files
        assert all(np.isfinite(params[k]).all() for k in params.files)


def test_single_process(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(PROGRAM), str(CONFIG)], env=_env(tmp_path),
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^processes=1 devices=1 local_devices=1 backend=cpu$", r.stdout, re.M)
    _check_training(r.stdout, tmp_path)


def test_emulated_v6e_16_four_processes(tmp_path: Path) -> None:
    port = _free_port()
    procs = []
    for pid in range(4):
        env = _env(tmp_path / f"worker{pid}",
                   XLA_FLAGS="--xla_force_host_platform_device_count=4",
                   JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="4",
                   JAX_PROCESS_ID=str(pid), TPUCTL_RUN_ID="test-run",
                   TPUCTL_WORKER_ID=str(pid), TPUCTL_NUM_WORKERS="4",
                   TPUCTL_INIT_TIMEOUT_SEC="30")
        procs.append(subprocess.Popen([sys.executable, str(PROGRAM), str(CONFIG)], env=env,
                                      cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    start = time.monotonic()
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(1.0, 55 - (time.monotonic() - start)))[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for pid, (p, out) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"process {pid} exited {p.returncode}:\n{out}"
    out0 = outs[0]
    assert re.search(r"^processes=4 devices=16 local_devices=4 backend=cpu$", out0, re.M), out0
    _check_training(out0, tmp_path / "worker0")
    for pid in (1, 2, 3):  # only process 0 logs and writes the checkpoint
        assert not STEP_RE.search(outs[pid]), outs[pid]
        assert not (tmp_path / f"worker{pid}" / "checkpoint").exists()


@pytest.mark.parametrize("extra,message", [
    ("bogus_key: 1\n", "unknown config key(s)"),
    ("learning_rate: fast\n", "must be float"),
])
def test_bad_config_exits_2(tmp_path: Path, extra: str, message: str) -> None:
    lines = [ln for ln in CONFIG.read_text().splitlines(keepends=True)
             if not (extra.startswith("learning_rate") and ln.startswith("learning_rate"))]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("".join(lines) + extra)
    r = subprocess.run([sys.executable, str(PROGRAM), str(cfg)], env=_env(tmp_path),
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "checkpoint").exists()
