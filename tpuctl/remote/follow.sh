#!/usr/bin/env bash
# Stream a worker's run log from a byte offset; return when the run has ended and the log is
# drained. The caller counts the bytes it received, so after an SSH drop it resumes exactly
# where it stopped: no lost and no repeated lines.
#   follow.sh RUN_ID|- WORKER_ID OFFSET FOLLOW(0|1) [LAST_LINES]
# At the end prints "tpuctl-run=RUN_ID exit_code=N|- alive=0|1" on stderr.
set -euo pipefail
# shellcheck source=lib.sh
. "${0%/*}/lib.sh"
run_id=$1
worker=$2
offset=$3
follow=$4
last=${5:-}
runs="$HOME/.tpuctl/runs"
if [ "$run_id" = - ]; then
  run_id=$(cat "$runs/latest" 2>/dev/null || true)
fi
d="$runs/$run_id"
log="$d/worker$worker.log"
if [ -z "$run_id" ] || [ ! -d "$d" ]; then
  echo "no run ${run_id:-yet} on worker $worker" >&2
  exit 3
fi
touch "$log"
if [ -n "$last" ] && [ "$offset" = 0 ]; then
  # start at the last N lines: the byte offset where they begin
  # both numbers from one snapshot of the first $size bytes: the log may be growing
  size=$(stat -c %s "$log")
  tailbytes=$(head -c "$size" "$log" | tail -n "$last" | wc -c)
  offset=$((size - tailbytes))
  echo "tpuctl-offset=$offset" >&2
fi
pid=$(cat "$d/pid" 2>/dev/null || echo 1)
# the run goes on: no exit code yet, and its supervisor alive (a zombie is not: proc_alive)
supervised() { [ ! -f "$d/exit_code" ] && proc_alive "$pid"; }
# `sed -u` passes on complete lines only, unbuffered (a partial last line waits for its
# newline, or for the end of the stream), so the caller's byte count ends on a line boundary.
# (Not awk: Debian's mawk block-buffers a pipe and would hold lines back.)
if [ "$follow" = 1 ] && supervised; then
  # inotify-driven; --pid ends it (after a final read) once that process has gone. Not the
  # supervisor's pid: `tail --pid` counts a zombie as alive, and an orphaned supervisor stays
  # one until PID 1 reaps it (seconds, or never, on some machines). A watcher of ours, which
  # this shell reaps at once, ends when the run does (or when this script is gone).
  me=$$
  ( while supervised && kill -0 "$me" 2>/dev/null; do sleep 0.2; done ) &
  watcher=$!
  tail -c "+$((offset + 1))" --pid="$watcher" -s 0.25 -f "$log" | LC_ALL=C sed -u ''
  kill "$watcher" 2>/dev/null || true
else
  tail -c "+$((offset + 1))" "$log" | LC_ALL=C sed -u ''
fi
alive=0
proc_alive "$pid" && alive=1
echo "tpuctl-run=$run_id exit_code=$(cat "$d/exit_code" 2>/dev/null || echo -) alive=$alive" \
  "timed_out=$([ -f "$d/timed_out" ] && echo 1 || echo 0)" >&2
