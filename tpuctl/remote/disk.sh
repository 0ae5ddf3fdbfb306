#!/usr/bin/env bash
# Mounts a data disk the node attaches, formatting it first when it is empty (GCP gives new
# disks unformatted), the way the TPU documentation does it; idempotent:
#   disk.sh N MOUNT ro|rw   (N: the disk's place in the node's dataDisks, from 1)
# -> "mounted=PATH formatted=0|1"
# On the emulator every path is under $TPUCTL_EMULATOR_ROOT (docs/emulator.md: Data disks).
set -euo pipefail
n=$1
mnt=$2
mode=$3
R=${TPUCTL_EMULATOR_ROOT:-}
dev=$R/dev/disk/by-id/google-persistent-disk-$n
target=$R$mnt
if [ ! -e "$dev" ]; then
  echo "no data disk $n on this worker ($dev): is it in the node's dataDisks?" >&2
  exit 3
fi
formatted=0
if ! sudo blkid "$dev" >/dev/null 2>&1; then
  if [ "$mode" = ro ]; then
    echo "data disk $n is empty (no filesystem) and attached read-only: format it read-write first" >&2
    exit 4
  fi
  sudo mkfs.ext4 -q -m 0 -E lazy_itable_init=0,discard "$dev"
  formatted=1
fi
sudo mkdir -p "$target"
if ! mountpoint -q "$target"; then
  opts=discard,defaults
  [ "$mode" = ro ] && opts=ro,$opts
  sudo mount -o "$opts" "$dev" "$target"
fi
if [ "$mode" = rw ]; then
  sudo chmod a+w "$target"
fi
echo "mounted=$target formatted=$formatted"
