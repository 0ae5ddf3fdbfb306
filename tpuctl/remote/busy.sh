#!/usr/bin/env bash
# Is the TPU held? Holders of the accelerator device files (found through /proc/*/fd, never
# by process name) and a stale libtpu lockfile.
#   busy.sh check   print "pid=P cmd=C" for each holder (nothing when free); remove a stale
#                   lockfile nobody holds
#   busy.sh kill    SIGKILL every holder, then remove the lockfile
# Paths: $TPUCTL_TPU_DEVICES (a glob, default "/dev/accel* /dev/vfio/[0-9]*") and
# $TPUCTL_LIBTPU_LOCKFILE (default /tmp/libtpu_lockfile); the emulator sets per-worker ones.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
mode=${1:-check}
lock=$(tpu_lockfile)
mapfile -t holders < <(tpu_holders)

case "$mode" in
  check)
    for pid in "${holders[@]}"; do
      echo "pid=$pid cmd=$(proc_cmd "$pid")"
    done
    if [ ${#holders[@]} -eq 0 ] && [ -e "$lock" ]; then rm -f "$lock"; fi
    ;;
  kill)
    for pid in "${holders[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # SIGKILL takes effect when the process next runs: until it has exited (gone, or a zombie,
    # which holds no files) a check right after would still find it holding the device
    for pid in "${holders[@]}"; do
      for _ in $(seq 1 100); do
        st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1 || true)
        case "$st" in ''|Z|X) break ;; esac
        sleep 0.02
      done
    done
    rm -f "$lock"
    ;;
  *)
    echo "usage: busy.sh check|kill" >&2
    exit 2
    ;;
esac
