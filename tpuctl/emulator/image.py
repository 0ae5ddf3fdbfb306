"""The emulated worker's image: the files a TPU VM has outside the login's home, under the
worker's root directory (`w<i>/`, `TPUCTL_EMULATOR_ROOT` on the worker), and the commands
that differ because every worker shares this machine (first on PATH, in `image-bin/`).

Under the root, as on a TPU VM: `dev/accel<k>` (TPU devices), `tmp/libtpu_lockfile`,
`dev/sdb`, `dev/sdc`, ... and `dev/disk/by-id/google-persistent-disk-<n>` (data disks, in
dataDisks order from 1: links to the disk's image file), `sys/block/sd?/ro` (1 for a
read-only attachment), `var/log/syslog` (what the guest agent logs: the startup script's
run), `mnt/` (where a disk may be mounted).

Commands: `whoami` (the login's name), `sudo` (runs the command as the same OS user: a TPU
VM's passwordless sudo, never this machine's), `journalctl` (reads `var/log/syslog` for
`-u google-startup-scripts.service`), and `mount`/`umount`/`mountpoint`: a real mount needs
root (a loop device) or FUSE, which the emulator's user may not have, so `mount DEV DIR` of
a data disk formatted for real (`mkfs.ext4`, `blkid`) maps DIR to a directory kept per
filesystem UUID beside the disk's image (a new `mkfs` starts empty, a re-attached disk keeps
its files). DIR must lie under the worker's root.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

IMAGE_BIN = "image-bin"  # per worker, beside its home
SYSLOG = "var/log/syslog"
MOUNTS = "run/tpuctl-mounts"  # the mount stand-in's table

WHOAMI = """#!/bin/sh
# the login name, as whoami prints it on a TPU VM (tpuctl emulator: one OS user for all)
printf '%s\\n' "$LOGNAME"
"""

SUDO = """#!/bin/bash
# tpuctl emulator: a TPU VM's passwordless sudo. Every emulated login is the emulator's OS
# user, so the command runs as that user (USER and LOGNAME say root): never the host's sudo.
while [ $# -gt 0 ]; do
  case "$1" in
    -n|-E|-H|-S|-k|--non-interactive|--preserve-env|--preserve-env=*) shift ;;
    -u|-g) shift 2 ;;
    -u?*|-g?*) shift ;;
    -i|-s) shift; [ $# -gt 0 ] || set -- bash -l ;;
    --) shift; break ;;
    -*) echo "sudo: option $1 is not emulated (tpuctl emulator)" >&2; exit 1 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: sudo [-n] [-u user] command" >&2; exit 1; }
export SUDO_USER="${LOGNAME:-}" USER=root LOGNAME=root
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac
exec "$@"
"""

JOURNALCTL = """#!/bin/bash
# tpuctl emulator: journalctl over this worker's syslog (only the guest agent's startup
# scripts are logged). -u/--unit, -o cat|short, -n N, -b, --no-pager, -q, -f.
log=__SYSLOG__
unit='' output=short lines='' follow=''
while [ $# -gt 0 ]; do
  case "$1" in
    -u|--unit) unit=$2; shift 2 ;;
    --unit=*) unit=${1#*=}; shift ;;
    -o|--output) output=$2; shift 2 ;;
    --output=*) output=${1#*=}; shift ;;
    -ocat) output=cat; shift ;;
    -n|--lines) lines=$2; shift 2 ;;
    --lines=*) lines=${1#*=}; shift ;;
    -b|--boot) shift; case "${1:-}" in -[0-9]*|[0-9]*) shift ;; esac ;;
    --boot=*|--no-pager|-q|--quiet|--no-hostname|-a|--all) shift ;;
    -f|--follow) follow=1; shift ;;
    *) echo "journalctl: option $1 is not emulated (tpuctl emulator)" >&2; exit 1 ;;
  esac
done
case "$unit" in
  ''|google-startup-scripts|google-startup-scripts.service) ;;
  *) echo "-- No entries --"; exit 0 ;;
esac
[ -s "$log" ] || { echo "-- No entries --"; exit 0; }
show() { if [ "$output" = cat ]; then sed -u 's/^[^]]*]: //'; else cat; fi; }
if [ -n "$follow" ]; then tail -n "${lines:-10}" -f "$log" | show
elif [ -n "$lines" ]; then tail -n "$lines" "$log" | show
else show < "$log"
fi
"""

MOUNT = """#!/bin/bash
# tpuctl emulator: mount a data disk (formatted for real: mkfs.ext4, blkid) by mapping the
# mount point to a directory kept per filesystem UUID beside the disk's image. A real mount
# needs root or FUSE. Anything else goes to this machine's mount.
root=__ROOT__ table=__MOUNTS__
opts='' args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) opts="$opts,$2"; shift 2 ;;
    -o?*) opts="$opts,${1#-o}"; shift ;;
    -t) shift 2 ;;
    -t?*) shift ;;
    -*) shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ ${#args[@]} -eq 0 ]; then cat "$table" 2>/dev/null; exec __REAL_MOUNT__; fi
src=${args[0]} dir=${args[1]:-}
img=$(readlink -f -- "$src" 2>/dev/null || true)
case "$img" in *.img) ;; *) exec __REAL_MOUNT__ "$@" ;; esac
[ -n "$dir" ] || { echo "mount: $src: can't find in /etc/fstab." >&2; exit 1; }
case "$(readlink -f -- "$dir" 2>/dev/null || echo "$dir")/" in
  "$root"/*) ;;
  *) echo "mount: $dir: mount point outside this worker's root (tpuctl emulator: use" \\
       "\\$TPUCTL_EMULATOR_ROOT$dir)" >&2; exit 32 ;;
esac
[ -d "$dir" ] || { echo "mount: $dir: mount point does not exist." >&2; exit 32; }
if grep -q " $dir " "$table" 2>/dev/null || [ -L "$dir" ]; then
  echo "mount: $dir: $src already mounted or mount point busy." >&2; exit 32
fi
uuid=$(blkid -p -o value -s UUID -- "$img" 2>/dev/null || true)
type=$(blkid -p -o value -s TYPE -- "$img" 2>/dev/null || true)
if [ -z "$uuid" ] || [ -z "$type" ]; then
  echo "mount: $dir: wrong fs type, bad option, bad superblock on $src, missing codepage" \\
       "or helper program, or other error." >&2
  exit 32
fi
[ -z "$(ls -A -- "$dir")" ] || {
  echo "mount: $dir: mount point not empty (tpuctl emulator: mount on an empty directory)" >&2
  exit 32; }
mode=rw
for dev in "$root"/dev/sd?; do
  if [ "$(readlink -f -- "$dev")" = "$img" ] && [ "$(cat "$root/sys/block/${dev##*/}/ro" \\
      2>/dev/null)" = 1 ]; then mode=ro; fi
done
case ",$opts," in *,ro,*) mode=ro ;; esac
if [ "$mode" = ro ] && case ",$opts," in *,ro,*) false ;; *) true ;; esac; then
  echo "mount: $dir: WARNING: source write-protected, mounted read-only." >&2
fi
data="${img%.img}.fs/$uuid"
mkdir -p -- "$data"
# a read-only attachment is read-only for every VM that has it (no writer can coexist)
if [ "$mode" = ro ]; then chmod -R a-w -- "$data"; else chmod -R u+w -- "$data"; fi
rmdir -- "$dir" && ln -s -- "$data" "$dir"
mkdir -p -- "$(dirname -- "$table")"
echo "$src $dir $type $mode 0 0" >> "$table"
"""

UMOUNT = """#!/bin/bash
# tpuctl emulator: unmount what the mount stand-in mounted; anything else: this machine's.
table=__MOUNTS__
[ $# -gt 0 ] || exec __REAL_UMOUNT__
for a in "$@"; do case "$a" in -*) ;; *) target=$a ;; esac; done
line=$(awk -v t="$target" '$1 == t || $2 == t {print; exit}' "$table" 2>/dev/null)
[ -n "$line" ] || exec __REAL_UMOUNT__ "$@"
dir=$(echo "$line" | awk '{print $2}')
rm -f -- "$dir" && mkdir -p -- "$dir"
awk -v d="$dir" '$2 != d' "$table" > "$table.tmp" && mv -- "$table.tmp" "$table"
"""

MOUNTPOINT = """#!/bin/bash
# tpuctl emulator: what the mount stand-in mounted is a mount point; else this machine's.
table=__MOUNTS__
quiet='' dir=''
for a in "$@"; do case "$a" in -q) quiet=1 ;; -*) ;; *) dir=$a ;; esac; done
if [ -n "$dir" ] && awk -v d="$dir" '$2 == d {f=1} END {exit !f}' "$table" 2>/dev/null; then
  [ -n "$quiet" ] || echo "$dir is a mountpoint"
  exit 0
fi
exec __REAL_MOUNTPOINT__ "$@"
"""


def write_script(path: Path, text: str) -> None:
    """An executable file, replaced atomically (a worker may be running the old one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o700)
    os.replace(tmp, path)


def shims(root: Path) -> dict[str, str]:
    """The image's own commands of the worker whose root is `root`."""
    from tpuctl.emulator.vms import image_path

    q = {"__ROOT__": shlex.quote(str(root)), "__MOUNTS__": shlex.quote(str(root / MOUNTS)),
         "__SYSLOG__": shlex.quote(str(root / SYSLOG))}
    for tool in ("mount", "umount", "mountpoint"):  # this machine's own, for anything else
        real = shutil.which(tool, path=image_path())
        q[f"__REAL_{tool.upper()}__"] = shlex.quote(real) if real else "false"
    out = {"whoami": WHOAMI, "sudo": SUDO, "journalctl": JOURNALCTL, "mount": MOUNT,
           "umount": UMOUNT, "mountpoint": MOUNTPOINT}
    for name, text in out.items():
        for k, v in q.items():
            text = text.replace(k, v)
        out[name] = text
    return out


def ensure(root: Path, chips: int) -> None:
    """The worker's device files, its /tmp, /mnt, /var/log and the image's own commands
    (cheap when they are there: one stat)."""
    image_bin = root / IMAGE_BIN
    if (image_bin / "mountpoint").exists():
        return
    dev = root / "dev"
    dev.mkdir(parents=True, exist_ok=True)
    for i in range(chips):
        (dev / f"accel{i}").touch()
    for sub in ("tmp", "mnt", "var/log", "run"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    image_bin.mkdir(exist_ok=True)
    for name, text in shims(root).items():  # mountpoint last: the marker above
        write_script(image_bin / name, text)


def attach_disks(root: Path, disks: Sequence[tuple[Path, bool]]) -> None:
    """Data disks where a TPU VM has them: `dev/sdb`... linking to each disk's image file,
    `dev/disk/by-id/google-persistent-disk-<n>` (n from 1; 0 is the boot disk) linking to
    it, `sys/block/sd?/ro`. Replaces what an earlier boot attached."""
    by_id = root / "dev" / "disk" / "by-id"
    by_id.mkdir(parents=True, exist_ok=True)
    for old in list(by_id.glob("google-persistent-disk-*")) + list((root / "dev").glob("sd?")):
        old.unlink(missing_ok=True)
    for i, (image, read_only) in enumerate(disks):
        dev = f"sd{chr(ord('b') + i)}"
        (root / "dev" / dev).symlink_to(image)
        (by_id / f"google-persistent-disk-{i + 1}").symlink_to(f"../../{dev}")
        block = root / "sys" / "block" / dev
        block.mkdir(parents=True, exist_ok=True)
        (block / "ro").write_text("1\n" if read_only else "0\n")
