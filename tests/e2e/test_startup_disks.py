"""`up` with a recipe's `node:` block on the emulator: it waits for the node's startup script
(which writes a file only after 5 s) so the job sees the file on every worker; a data disk
the recipe mounts (formatted if empty) is writable by the job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli, Emulator
from tests.e2e.test_loop import git

pytestmark = pytest.mark.e2e


def _up(cli: Cli, proj: Path, recipe: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tpuctl", "up", recipe], capture_output=True,
                          text=True, cwd=proj, env=cli.env(), timeout=600,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup") / "proj"
    root.mkdir()
    (root / "boot.sh").write_text(
        "#!/bin/bash\nset -e\necho starting\nsleep 5\n"
        'echo "made by the startup script" > "${TPUCTL_EMULATOR_ROOT:-}/tmp/boot-marker"\n'
        "echo wrote it\n")
    (root / "startup.yaml").write_text(
        "name: su-wait\naccelerator: v4-16\n"
        "node: {metadata_from_file: {startup-script: boot.sh}, metadata: {team: ml}}\n"
        "command: 'cat \"${TPUCTL_EMULATOR_ROOT:-}/tmp/boot-marker\"'\n")
    (root / "disk.yaml").write_text(
        "name: su-disk\naccelerator: v6e-8\n"
        "node:\n  data_disks: [{source: su-data, mode: read-write, mount: /mnt/disks/data}]\n"
        "command: 'D=${TPUCTL_EMULATOR_ROOT:-}/mnt/disks/data; echo written-by-job > $D/out "
        "&& cat $D/out && df -T $D >/dev/null'\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


def test_up_waits_for_the_startup_script_and_the_job_sees_its_file_everywhere(
        cli: Cli, proj: Path):
    run = _up(cli, proj, "startup.yaml")
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        assert re.search(r"✓ startup-script\s+done\s+finished on 2 workers", run.stderr)
        lines = sorted(ln for ln in run.stdout.splitlines() if "made by the startup" in ln)
        assert [ln.split()[0] for ln in lines] == ["[w0]", "[w1]"], run.stdout
    finally:
        cli("down", "su-wait", "--yes")


def test_up_mounts_a_data_disk_the_job_writes(cli: Cli, proj: Path, emulator: Emulator):
    emulator.admin("POST", "projects/local-project/zones/local-a/disks",
                   json.dumps({"name": "su-data", "sizeGb": 1}).encode())
    run = _up(cli, proj, "disk.yaml")
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        assert re.search(r"✓ disks\s+done\s+/mnt/disks/data on 1 workers", run.stderr)
        assert "written-by-job" in run.stdout
    finally:
        cli("down", "su-disk", "--yes")
