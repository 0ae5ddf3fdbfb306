#!/usr/bin/env bash
# Stop a run on this worker: TERM its process group, KILL after GRACE seconds, clear the
# libtpu lockfile, record the outcome. By pgid file only, never by process name.
#   stop.sh RUN_ID|- GRACE
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
run_id=$1
grace=${2:-10}
runs="$HOME/.tpuctl/runs"
if [ "$run_id" = - ]; then
  run_id=$(cat "$runs/latest" 2>/dev/null || true)
fi
d="$runs/$run_id"
if [ -z "$run_id" ] || [ ! -f "$d/pgid" ]; then
  echo "run=${run_id:--} result=missing"
  exit 0
fi
pgid=$(cat "$d/pgid")
alive() { run_alive "$d"; }
result=not-running
if alive; then
  kill -TERM -- "-$pgid" 2>/dev/null || true
  result=terminated
  end=$((SECONDS + grace))
  while alive && [ $SECONDS -lt $end ]; do sleep 0.2; done
  if alive; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
    result=killed
    for _ in $(seq 1 50); do alive || break; sleep 0.1; done
  fi
  date -u +%Y-%m-%dT%H:%M:%SZ >"$d/stopped"
fi
if [ ! -f "$d/exit_code" ] && [ "$result" != not-running ]; then
  [ "$result" = killed ] && code=137 || code=143
  printf '%s\n' "$code" >"$d/exit_code"
fi
rm -f "${TPUCTL_LIBTPU_LOCKFILE:-/tmp/libtpu_lockfile}"
echo "run=$run_id result=$result exit_code=$(cat "$d/exit_code" 2>/dev/null || echo -)"
