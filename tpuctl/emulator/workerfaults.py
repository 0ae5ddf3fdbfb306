"""Faults acted out on one emulated worker, each as the real thing looks from inside the VM:

- `full-disk`: a `df` first on the worker's PATH reports its home and /tmp 100% used (a test
  double: the home is on this machine's disk, which is not full; writes still succeed);
- `held-tpu`: a process (`python3 train.py`, a crashed job's leftover) holds the worker's
  first device file and its libtpu lockfile open;
- `stale-lockfile`: the libtpu lockfile exists and nobody holds it;
- `blocked-ports`: the port on the worker's internal address answers no SYN (a firewall that
  drops): a socket bound there whose accept queue is full, so connects time out;
- `no-ensurepip`: the image's `python3` has no ensurepip, as Ubuntu's without python3-venv
  (`-m ensurepip` and `-m venv` fail with Debian's messages; `-m venv --without-pip` works);
- `package-skew`: the version recorded for a package in the worker's venvs differs from the
  others' (its dist-info METADATA rewritten), as on a worker installed from another snapshot
  of the index; applied whenever a session starts, since venvs appear with bootstrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tpuctl.emulator.processes import NODE_ENV, send_signal

if TYPE_CHECKING:
    from tpuctl.emulator.vms import VmWorker

log = logging.getLogger(__name__)

FULL_DF = """#!/bin/sh
# tpuctl emulator, fault full-disk: this worker's boot disk (its home and /tmp) is full.
# A test double of df: the POSIX (-P) format in 1K blocks, whatever the options.
echo "Filesystem     1024-blocks      Used Available Capacity Mounted on"
n=0
for a in "$@"; do case "$a" in -*) ;; *) n=$((n+1));
  echo "/dev/root        101430960 101225360    205600     100% /" ;; esac; done
[ "$n" -gt 0 ] || echo "/dev/root        101430960 101225360    205600     100% /"
"""

NO_ENSUREPIP = """#!/bin/bash
# tpuctl emulator, fault no-ensurepip: an image whose python3 lacks ensurepip (Ubuntu
# without python3-venv); everything else is the real interpreter.
real=__REAL__
if [ "${1:-}" = -m ] && [ "${2:-}" = ensurepip ]; then
  echo "$0: No module named ensurepip" >&2
  exit 1
fi
if [ "${1:-}" = -m ] && [ "${2:-}" = venv ]; then
  for a in "${@:3}"; do [ "$a" = --without-pip ] && exec "$real" "$@"; done
  "$real" -m venv --without-pip "${@:3}" || exit
  dir=${*: -1}
  cat >&2 <<EOF
The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python__VERSION__-venv

You may need to use sudo with that command.  After installing the python3-venv
package, recreate your virtual environment.

Failing command: $dir/bin/python3
EOF
  exit 1
fi
exec "$real" "$@"
"""

_HOLDER = 'exec 3<"$1" 4>>"$2"; exec -a "python3 train.py" sleep infinity'


@dataclass(frozen=True)
class Wanted:
    """The faults one worker should show now."""

    full_disk: bool = False
    held_tpu: bool = False
    stale_lockfile: bool = False
    blocked_ports: frozenset[int] = frozenset()
    no_ensurepip: bool = False


@dataclass
class Acted:
    """What has been done to one worker, to undo or keep."""

    holder: asyncio.subprocess.Process | None = None
    stale_made: bool = False
    blockers: dict[int, list[socket.socket]] = field(default_factory=dict)


def _shim(path: Path, text: str | None) -> None:
    from tpuctl.emulator.image import write_script

    if text is None:
        path.unlink(missing_ok=True)
    elif not path.exists() or path.read_text() != text:
        write_script(path, text)


def _python_shims(worker: VmWorker, on: bool) -> None:
    from tpuctl.emulator.vms import image_path

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    real = shutil.which("python3", path=image_path())
    text = None
    if on and real:
        real = os.path.realpath(real)
        m = re.search(r"python(\d+\.\d+)$", real)
        version = m.group(1) if m else version
        text = NO_ENSUREPIP.replace("__REAL__", real).replace("__VERSION__", version)
    _shim(worker.image_bin / "python3", text)
    _shim(worker.image_bin / f"python{version}", text)


def block_port(ip: str, port: int) -> list[socket.socket]:
    """A listener on ip:port that never accepts, its queue filled: SYNs are dropped."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((ip, port))
    srv.listen(0)
    held = [srv]
    for _ in range(3):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex((ip, port))
        held.append(c)
    return held


async def apply(worker: VmWorker, want: Wanted) -> None:
    """Make the worker show exactly the `want`ed faults (idempotent)."""
    acted: Acted = worker.acted
    worker.ensure_image()
    _shim(worker.image_bin / "df", FULL_DF if want.full_disk else None)
    _python_shims(worker, want.no_ensurepip)
    lock = worker.home.parent / "tmp" / "libtpu_lockfile"
    if want.stale_lockfile and not acted.stale_made:
        lock.touch()
        acted.stale_made = True
    elif not want.stale_lockfile:
        acted.stale_made = False
    if want.held_tpu and (acted.holder is None or acted.holder.returncode is not None):
        env = {"PATH": os.environ.get("PATH", os.defpath), NODE_ENV: worker.node.marker}
        acted.holder = await asyncio.create_subprocess_exec(
            "bash", "-c", _HOLDER, "holder", str(worker.home.parent / "dev" / "accel0"),
            str(lock), env=env, cwd=worker.home, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    elif not want.held_tpu and acted.holder is not None:
        await stop_holder(acted)
    for port in set(acted.blockers) - want.blocked_ports:
        for s in acted.blockers.pop(port):
            s.close()
    for port in want.blocked_ports - set(acted.blockers):
        try:
            acted.blockers[port] = block_port(worker.ip, port)
        except OSError as e:  # in use by a process on the worker: nothing to block with
            log.warning("blocked-ports: cannot hold %s:%d: %s", worker.ip, port, e)


async def stop_holder(acted: Acted) -> None:
    proc, acted.holder = acted.holder, None
    if proc is not None and proc.returncode is None:
        send_signal(proc.pid, 9, group=True)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()


async def undo(worker: VmWorker) -> None:
    """The worker stops: its holder and blocking sockets go (shims stay with its image)."""
    acted: Acted = worker.acted
    await stop_holder(acted)
    for sockets in acted.blockers.values():
        for s in sockets:
            s.close()
    acted.blockers.clear()


def skew_version(version: str) -> str:
    """Another plausible release: the last number one lower (or one higher at 0)."""
    m = re.match(r"^(.*?)(\d+)(\D*)$", version)
    if not m:
        return version + ".post1"
    n = int(m.group(2))
    return f"{m.group(1)}{n - 1 if n > 0 else n + 1}{m.group(3)}"


def apply_skew(home: Path, packages: list[str]) -> None:
    """Rewrite the recorded version of `packages` in every venv under ~/.tpuctl/venvs, once
    (a marker beside METADATA remembers it)."""
    for package in packages:
        pattern = re.compile(rf"^{re.escape(package).replace('_', '[-_.]')}-[^-]+\.dist-info$",
                             re.IGNORECASE)
        for site in home.glob(".tpuctl/venvs/*/lib/python*/site-packages"):
            for dist in site.iterdir():
                meta = dist / "METADATA"
                if not pattern.match(dist.name) or not meta.is_file():
                    continue
                marker = dist / "TPUCTL_EMULATOR_SKEW"
                if marker.exists():
                    continue
                text = meta.read_text(errors="replace")
                m = re.search(r"^Version: *(\S+)", text, re.MULTILINE)
                if m:
                    meta.write_text(text.replace(m.group(0), f"Version: {skew_version(m.group(1))}",
                                                 1))
                    marker.write_text(m.group(1) + "\n")
