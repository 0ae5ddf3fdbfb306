#!/usr/bin/env bash
# The supervisor of one run on one worker, started by launch.sh under `setsid nohup`, so it
# leads its own session and process group (pgid = its pid). It records pid, pgid, started_at,
# a heartbeat while the job lives, the job's output in worker<I>.log, and exit_code at the end.
#   run.sh RUN_DIR WORKER_ID WORKDIR VENV_DIR|- [TIMEOUT_SECONDS|-]
# With a timeout, a watchdog marks `timed_out`, TERMs the process group, KILLs it 10 s later.
set -euo pipefail
run_dir=$1
worker=$2
workdir=$3
venv=$4
limit=${5:--}
log="$run_dir/worker$worker.log"

echo $$ >"$run_dir/pid"
read -r -a stat <"/proc/$$/stat" || true
echo "${stat[4]:-$$}" >"$run_dir/pgid"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
proc_start $$ >"$run_dir/pgid_start" || true  # tells our group from a later one reusing the id
date -u +%Y-%m-%dT%H:%M:%SZ >"$run_dir/started_at"

write_atomic() { printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"; }

# The helpers below sleep in a child they end themselves when TERMed (`nap`), so neither
# they nor a `sleep` of theirs outlives the run, and a TERM to the group (`stop`) ends them
# at once instead of keeping the group alive until the KILL. The trap kills the subshell's
# own background jobs (`jobs -p`), not a saved pid: a TERM that lands between `sleep &` and
# the assignment of its pid (a `stop` right after `launch`) must not leave the sleep behind.
nap() { sleep "$1" & wait "$!"; }
(
  trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM
  while :; do
    write_atomic "$run_dir/heartbeat" "$(date +%s)"
    nap 2
  done
) &
beat=$!

child=
on_term() { [ -n "$child" ] && kill -TERM "$child" 2>/dev/null || true; }
trap on_term TERM INT HUP

set +e
(
  set -a
  # shellcheck disable=SC1091
  [ -f "$HOME/.tpuctl/secrets.env" ] && . "$HOME/.tpuctl/secrets.env"
  # shellcheck disable=SC1091
  . "$run_dir/env"
  set +a
  export TPUCTL_RUN_DIR="$run_dir"
  # a persistent compilation cache: a restarted server or rerun skips recompiling (a recipe's
  # env may point it elsewhere)
  export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/tpuctl/jax-compilation}"
  if [ "$venv" != - ]; then
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
  fi
  cd "$workdir"
  exec bash "$run_dir/cmd"
) >>"$log" 2>&1 </dev/null &
child=$!
watchdog=
if [ "$limit" != - ]; then
  (
    trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM  # the run ended, or `stop` ends it
    nap "$limit"
    kill -0 "$child" 2>/dev/null || exit 0
    : >"$run_dir/timed_out"
    trap '' TERM  # from here on the group's TERM is ours, for the job
    kill -TERM -- "-$$" 2>/dev/null || true
    for _ in $(seq 1 50); do  # up to 10 s of grace, leaving as soon as the job is gone
      kill -0 "$child" 2>/dev/null || exit 0
      sleep 0.2
    done
    if kill -0 "$child" 2>/dev/null; then
      [ -f "$run_dir/exit_code" ] || printf '137\n' >"$run_dir/exit_code"
      kill -KILL -- "-$$" 2>/dev/null || true
    fi
  ) &
  watchdog=$!
fi
wait "$child"
code=$?
# a signal interrupts `wait`; wait again for the job's own status
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  code=$?
done
set -e
kill "$beat" ${watchdog:+"$watchdog"} 2>/dev/null || true
# when the job ended: `status` orders ranks by it (which went down first)
write_atomic "$run_dir/ended_at" "$(date +%s.%N)"
write_atomic "$run_dir/exit_code" "$code"
exit 0
