#!/usr/bin/env bash
# One line of key=value facts about a run on this worker (the latest when RUN_ID is "-").
#   status.sh RUN_ID|- WORKER_ID
# state: running | exited | dead (supervisor gone without an exit code) | missing
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
run_id=$1
worker=$2
runs="$HOME/.tpuctl/runs"
if [ "$run_id" = - ]; then
  run_id=$(cat "$runs/latest" 2>/dev/null || true)
fi
if [ -z "$run_id" ] || [ ! -d "$runs/$run_id" ]; then
  echo "run=${run_id:--} state=missing"
  exit 0
fi
d="$runs/$run_id"
now=$(date +%s)
beat=$(cat "$d/heartbeat" 2>/dev/null || echo 0)
pgid=$(cat "$d/pgid" 2>/dev/null || echo 0)
ended=-  # when the job ended; a supervisor killed with it has only its last heartbeat
if [ -f "$d/exit_code" ]; then
  state=exited
  ended=$(cat "$d/ended_at" 2>/dev/null || stat -c %Y "$d/exit_code")
elif run_alive "$d"; then
  state=running
else
  state=dead
  ended=$beat
fi
lines=$(wc -l <"$d/worker$worker.log" 2>/dev/null || echo 0)
serve=$(sed -n "s/^export TPUCTL_SERVE_URL='\{0,1\}\([^']*\)'\{0,1\}$/\1/p" "$d/env" 2>/dev/null || true)
echo "run=$run_id state=$state exit_code=$(cat "$d/exit_code" 2>/dev/null || echo -)" \
  "pid=$(cat "$d/pid" 2>/dev/null || echo -) pgid=$pgid heartbeat_age=$((now - beat))" \
  "started_at=$(cat "$d/started_at" 2>/dev/null || echo -) log_lines=$lines" \
  "stopped=$([ -f "$d/stopped" ] && echo 1 || echo 0) serve_url=${serve:--}" \
  "timed_out=$([ -f "$d/timed_out" ] && echo 1 || echo 0) ended_at=$ended"
