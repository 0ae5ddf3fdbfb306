#!/usr/bin/env bash
# One line of key=value facts per run on this worker (what `tpuctl runs` lists), in no order:
#   run=ID state=running|exited|dead exit_code=N|- heartbeat_age=S started_at=T|- stopped=0|1
#   timed_out=0|1 latest=0|1 ended_at=EPOCH|-
# ended_at: when the job ended (a dead run's: its last heartbeat); what `cost` and `gc --idle`
# count a node's busy time with.
#   runs.sh
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
runs="$HOME/.tpuctl/runs"
[ -d "$runs" ] || exit 0
latest=$(cat "$runs/latest" 2>/dev/null || true)
now=$(date +%s)
for d in "$runs"/*/; do
  d=${d%/}
  [ -f "$d/pgid" ] || [ -f "$d/exit_code" ] || continue  # not (yet) started
  id=${d##*/}
  run_state "$d"
  echo "run=$id state=$state exit_code=$(cat "$d/exit_code" 2>/dev/null || echo -)" \
    "heartbeat_age=$((now - beat)) started_at=$(cat "$d/started_at" 2>/dev/null || echo -)" \
    "stopped=$([ -f "$d/stopped" ] && echo 1 || echo 0)" \
    "timed_out=$([ -f "$d/timed_out" ] && echo 1 || echo 0)" \
    "latest=$([ "$id" = "$latest" ] && echo 1 || echo 0) ended_at=$ended"
done
