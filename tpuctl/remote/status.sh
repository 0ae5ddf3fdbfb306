#!/usr/bin/env bash
# One line of key=value facts about a run on this worker (the latest when RUN_ID is "-").
#   status.sh RUN_ID|- WORKER_ID
# state: running | exited | dead (supervisor gone without an exit code) | missing
set -euo pipefail
# shellcheck source=lib.sh
. "${0%/*}/lib.sh"  # (not dirname: no process; status runs on every worker per call)
run_id=$1
worker=$2
runs="$HOME/.tpuctl/runs"
if [ "$run_id" = - ]; then
  first_line run_id "$runs/latest"
fi
if [ -z "$run_id" ] || [ ! -d "$runs/$run_id" ]; then
  echo "run=${run_id:--} state=missing"
  exit 0
fi
# builtins only where they do (first_line, printf %()T): this runs on every worker per call
d="$runs/$run_id"
printf -v now '%(%s)T' -1
first_line beat "$d/heartbeat" 0
first_line pgid "$d/pgid" 0
first_line code "$d/exit_code" -
ended=-  # when the job ended; a supervisor killed with it has only its last heartbeat
if [ -f "$d/exit_code" ]; then
  state=exited
  first_line ended "$d/ended_at"
  [ -n "$ended" ] || ended=$(stat -c %Y "$d/exit_code")
elif run_alive "$d"; then
  state=running
else
  state=dead
  ended=$beat
fi
lines=0
if [ -f "$d/worker$worker.log" ]; then
  lines=$(wc -l <"$d/worker$worker.log")
fi
serve=
serve_re="^export TPUCTL_SERVE_URL='?([^']*)'?\$"
if [ -f "$d/env" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line =~ $serve_re ]]; then
      serve=${BASH_REMATCH[1]}
    fi
  done <"$d/env"
fi
first_line pid "$d/pid" -
first_line started "$d/started_at" -
stopped=0; [ -f "$d/stopped" ] && stopped=1
timed_out=0; [ -f "$d/timed_out" ] && timed_out=1
echo "run=$run_id state=$state exit_code=$code pid=$pid pgid=$pgid" \
  "heartbeat_age=$((now - beat)) started_at=$started log_lines=$lines stopped=$stopped" \
  "serve_url=${serve:--} timed_out=$timed_out ended_at=$ended"
