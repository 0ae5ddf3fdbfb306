"""A node's `startup-script`, run on every worker as GCP's guest agent runs it at boot.

On a TPU VM, `google-startup-scripts.service` (a systemd oneshot) runs
`google_metadata_script_runner startup` once the network is up: it reads `startup-script`
(or `startup-script-url`) from the instance's metadata, else the project's, writes it to a
temporary file and runs it with `bash -c FILE` as root; each output line is logged to the
journal and syslog as `startup-script: LINE`, then `startup-script exit status N` and
`Finished running startup scripts.` (`No startup scripts to run.` when there is none). It
runs at every boot: after a stop and start too.

Here it runs once the node is READY (after a create, a start, or an emulator restart, which
killed every worker process as a reboot would), as the emulator's OS user with the worker's
login environment (`USER`/`LOGNAME` root, `whoami` root, `HOME` the worker's home; cwd the
worker's root), and logs the same lines, in syslog's format, to the worker's
`var/log/syslog`, which the image's `journalctl -u google-startup-scripts.service` reads
(image.py). Its processes carry the node's marker: stopping, preempting or deleting the node
kills them, and the log just ends, as a VM's does when it goes down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tpuctl.emulator.image import SYSLOG

if TYPE_CHECKING:
    from tpuctl.emulator.vms import VmWorker

log = logging.getLogger(__name__)

AGENT_VERSION = "20240701.00"
KEYS = ("startup-script", "startup-script-url")  # what the runner looks for, in order
_TAG = "google_metadata_script_runner"


def scripts(node_md: Mapping[str, str], project_md: Mapping[str, str]) -> dict[str, str]:
    """The startup scripts a worker runs: the instance's keys, or if it has none, the
    project's (an empty value counts as absent), as the runner reads them."""
    for md in (node_md, project_md):
        found = {k: str(md[k]) for k in KEYS if md.get(k)}
        if found:
            return found
    return {}


class Syslog:
    """One worker's syslog, in syslog's own format (what `journalctl -o short` prints)."""

    def __init__(self, root: Path, hostname: str) -> None:
        self.path = root / SYSLOG
        self._host = hostname
        self._pid = os.getpid()

    def start(self) -> None:
        """A new boot: the log holds this boot's lines only (`journalctl -b`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)

    def write(self, message: str) -> None:
        stamp = time.strftime("%b %d %H:%M:%S")
        with open(self.path, "a", encoding="utf-8", errors="replace") as f:
            f.write(f"{stamp} {self._host} {_TAG}[{self._pid}]: {message}\n")


async def run(worker: VmWorker, found: Mapping[str, str], hostname: str) -> None:
    """Run the worker's startup scripts (`found`, from `scripts`) and log as the agent does."""
    syslog = Syslog(worker.root, hostname)
    await asyncio.to_thread(syslog.start)
    syslog.write(f"Starting startup scripts (version {AGENT_VERSION}).")
    if not found:
        syslog.write("No startup scripts to run.")
        return
    for key in KEYS:
        if key not in found:
            continue
        syslog.write(f"Found {key} in metadata.")
        if key.endswith("-url"):  # no network here: nothing to download
            syslog.write(f"{key}: tpuctl emulator: a script URL is not fetched, use "
                         "startup-script")
            syslog.write(f"{key} exit status 1")
            continue
        code = await _run_one(worker, key, found[key], syslog)
        syslog.write(f"{key} {_status(code)}")
    syslog.write("Finished running startup scripts.")


def _status(code: int) -> str:
    """How the agent (Go's exec) words an exit: `exit status N`, `signal: killed`."""
    if code >= 0:
        return f"exit status {code}"
    import signal

    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"signal: {-code}"
    words = {"SIGKILL": "killed", "SIGTERM": "terminated", "SIGINT": "interrupt",
             "SIGHUP": "hangup"}
    return f"signal: {words.get(name, name.removeprefix('SIG').lower())}"


async def _run_one(worker: VmWorker, key: str, text: str, syslog: Syslog) -> int:
    tmp = worker.root / "tmp" / f"metadata-scripts{secrets.token_hex(4)}"
    tmp.mkdir(parents=True, mode=0o700)
    path = tmp / key
    path.write_text(text.lstrip(" \n\v\f\t\r"))  # as the agent trims it
    path.chmod(0o755)
    env = worker.env("root", {})
    try:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", str(path), cwd=worker.root, env=env, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        worker.node.pgids.add(proc.pid)
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                syslog.write(f"{key}: {raw.decode(errors='replace').rstrip()}")
            return await proc.wait()
        finally:
            worker.node.pgids.discard(proc.pid)
    except OSError as e:
        syslog.write(f"{key}: {e}")
        return 127
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
