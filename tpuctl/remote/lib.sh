#!/usr/bin/env bash
# Shared helpers, sourced by the other worker scripts (never run on its own).

# group_alive PGID: true while any process of the group is alive. Zombies do not count:
# `kill -0 -PGID` succeeds on a killed process until its parent reaps it, which would make a
# dead run look alive for a while (and forever where nobody reaps).
# With START (the leader's start time, see proc_start), a live process whose pid is PGID but
# which started at another time is a stranger that reused the number once the group was gone:
# the group counts as dead, so it is never signalled (the kernel frees a pgid only when no
# member is left, so a group whose leader has exited is still the original one).
group_alive() {
  local pgid=$1 start=${2:-} stat= rest
  [ -n "$pgid" ] && [ "$pgid" != 0 ] || return 1
  kill -0 -- "-$pgid" 2>/dev/null || return 1
  # the process whose pid is PGID, read with a builtin (status asks this on every worker,
  # every call: no process started for it)
  { IFS= read -r -d '' stat || :; } 2>/dev/null <"/proc/$pgid/stat" || :
  if [ -n "$stat" ]; then
    rest=${stat##*) }  # after the command name, which may hold spaces and parentheses
    # shellcheck disable=SC2086
    set -- $rest
    if [ -n "$start" ] && [ -n "${20:-}" ] && [ "${20}" != "$start" ]; then
      return 1  # a stranger (see proc_start)
    fi
    # the leader itself alive (not a zombie) and still in its group: no scan of every process
    if [ "${1:-Z}" != Z ] && [ "${3:-}" = "$pgid" ]; then
      return 0
    fi
  fi
  # /proc/PID/stat after the command name: state ppid pgrp ...
  # (cat may fail on processes that vanish while it reads: that must not fail the check)
  { cat /proc/[0-9]*/stat 2>/dev/null || :; } | sed 's/^.*) //' \
    | awk -v g="$pgid" '$3 == g && $1 != "Z" { found = 1 } END { exit !found }'
}

# proc_alive PID: PID is a live process, not a zombie. `kill -0` (and `tail --pid`) count a
# zombie as alive, and an orphan stays one until PID 1 reaps it: at once under systemd,
# seconds later under some sandboxes' init, never where PID 1 does not reap (a container's
# shell). A builtin read, as in group_alive.
proc_alive() {
  local stat= rest
  kill -0 "$1" 2>/dev/null || return 1
  { IFS= read -r -d '' stat || :; } 2>/dev/null <"/proc/$1/stat" || :
  rest=${stat##*) }
  [ "${rest:0:1}" != Z ]
}

# proc_start PID: when PID started (clock ticks since boot, field 22 of /proc/PID/stat).
proc_start() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }  # after the command name, which may hold spaces and parentheses
  # shellcheck disable=SC2086
  set -- $rest
  [ -n "${20:-}" ] || return 1
  printf '%s\n' "${20}"
}

# first_line VAR FILE [DEFAULT]: VAR is FILE's first line, or DEFAULT when FILE is missing or
# empty. A builtin read: no process per file (status reads a dozen on every worker).
first_line() {
  local line=
  { IFS= read -r line || :; } 2>/dev/null <"$2" || :
  printf -v "$1" '%s' "${line:-${3:-}}"
}

# run_alive RUN_DIR: the run's process group is alive (and is still the run's).
run_alive() {
  local pgid start
  first_line pgid "$1/pgid" 0
  first_line start "$1/pgid_start"
  group_alive "$pgid" "$start"
}

# run_state RUN_DIR: sets `state` (exited|running|dead), `ended` (epoch the job ended, a dead
# run's last heartbeat, or -) and `beat` (its last heartbeat epoch, 0 if none).
run_state() {
  beat=$(cat "$1/heartbeat" 2>/dev/null || echo 0)
  ended=-
  if [ -f "$1/exit_code" ]; then
    state=exited
    ended=$(cat "$1/ended_at" 2>/dev/null || stat -c %Y "$1/exit_code")
  elif run_alive "$1"; then
    state=running
  else
    state=dead
    ended=$beat
  fi
}

# read_framed OUT: stdin is one frame, "tpuctl-frame 1 LENGTH SHA256" and a newline, then
# exactly LENGTH bytes (tpuctl/remote/__init__.py: frame). Writes the payload to OUT and
# succeeds only when all of it arrived intact: a cut connection or a short write must never
# pass for the whole input. Otherwise exit status 65 and one line on stderr (never the data).
read_framed() {
  local out=$1 magic version length sum extra got
  if ! IFS=' ' read -r magic version length sum extra; then
    echo "input incomplete: no frame header (was the connection cut?)" >&2
    return 65
  fi
  if [ "$magic" != tpuctl-frame ] || [ "$version" != 1 ] || [ -n "$extra" ] \
      || ! [[ $length =~ ^[0-9]{1,12}$ ]] || ! [[ $sum =~ ^[0-9a-f]{64}$ ]]; then
    echo "input rejected: not a tpuctl frame" >&2
    return 65
  fi
  head -c "$length" >"$out" || true
  got=$(stat -c %s "$out")
  if [ "$got" != "$length" ]; then
    echo "input incomplete: $got of $length bytes arrived" >&2
    return 65
  fi
  if [ "$(sha256sum <"$out" | cut -d' ' -f1)" != "$sum" ]; then
    echo "input corrupted: checksum mismatch" >&2
    return 65
  fi
  if [ "$(head -c 1 | wc -c)" != 0 ]; then
    echo "input rejected: bytes after the frame" >&2
    return 65
  fi
}

# tpu_lockfile: libtpu's lockfile ($TPUCTL_LIBTPU_LOCKFILE: the emulator sets one per worker).
tpu_lockfile() {
  printf '%s\n' "${TPUCTL_LIBTPU_LOCKFILE:-/tmp/libtpu_lockfile}"
}

# tpu_holders: the pids (one a line, sorted) of processes holding an accelerator device file
# ($TPUCTL_TPU_DEVICES, a glob, default "/dev/accel* /dev/vfio/[0-9]*") or the lockfile, found
# through /proc/*/fd (never by process name: workers may share a kernel), this shell excluded.
tpu_holders() {
  local lock restore t pid fddir
  local -a devices targets expr holders
  lock=$(tpu_lockfile)
  restore=$(shopt -p nullglob || true)
  shopt -s nullglob
  # shellcheck disable=SC2206
  devices=(${TPUCTL_TPU_DEVICES:-/dev/accel* /dev/vfio/[0-9]*})
  eval "$restore"
  targets=("${devices[@]}")
  [ -e "$lock" ] && targets+=("$lock")
  [ ${#targets[@]} -gt 0 ] || return 0
  # one find over every process's fd links (no fork per descriptor)
  expr=()
  for t in "${targets[@]}"; do
    [ ${#expr[@]} -gt 0 ] && expr+=(-o)
    expr+=(-lname "$t")
  done
  holders=()
  while IFS= read -r fddir; do
    pid=${fddir#/proc/}
    pid=${pid%%/*}
    [ "$pid" = $$ ] || holders+=("$pid")
  done < <(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 \( "${expr[@]}" \) -printf '%h\n' 2>/dev/null || true)
  [ ${#holders[@]} -gt 0 ] || return 0
  printf '%s\n' "${holders[@]}" | sort -un
}

# proc_cmd PID: its command line (arguments joined by spaces, at most 120 characters).
proc_cmd() {
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | cut -c1-120 || true
}
