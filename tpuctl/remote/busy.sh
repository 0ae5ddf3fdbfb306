#!/usr/bin/env bash
# Is the TPU held? Holders of the accelerator device files (found through /proc/*/fd, never
# by process name) and a stale libtpu lockfile.
#   busy.sh check   print "pid=P cmd=C" for each holder (nothing when free); remove a stale
#                   lockfile nobody holds
#   busy.sh kill    SIGKILL every holder, then remove the lockfile
# Paths: $TPUCTL_TPU_DEVICES (a glob, default "/dev/accel* /dev/vfio/[0-9]*") and
# $TPUCTL_LIBTPU_LOCKFILE (default /tmp/libtpu_lockfile); the emulator sets per-worker ones.
set -euo pipefail
shopt -s nullglob
mode=${1:-check}
lock=${TPUCTL_LIBTPU_LOCKFILE:-/tmp/libtpu_lockfile}
# shellcheck disable=SC2206
devices=(${TPUCTL_TPU_DEVICES:-/dev/accel* /dev/vfio/[0-9]*})

holders=()
targets=("${devices[@]}")
[ -e "$lock" ] && targets+=("$lock")
if [ ${#targets[@]} -gt 0 ]; then
  # one find over every process's fd links (no fork per descriptor)
  expr=()
  for t in "${targets[@]}"; do
    [ ${#expr[@]} -gt 0 ] && expr+=(-o)
    expr+=(-lname "$t")
  done
  while IFS= read -r fddir; do
    pid=${fddir#/proc/}
    pid=${pid%%/*}
    [ "$pid" = $$ ] || holders+=("$pid")
  done < <(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 \( "${expr[@]}" \) -printf '%h\n' 2>/dev/null || true)
fi
mapfile -t holders < <(printf '%s\n' "${holders[@]}" | sort -un | sed '/^$/d')

case "$mode" in
  check)
    for pid in "${holders[@]}"; do
      cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120 || true)
      echo "pid=$pid cmd=$cmd"
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
