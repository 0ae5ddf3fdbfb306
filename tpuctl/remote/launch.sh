#!/usr/bin/env bash
# Start one run on this worker, detached, and return at once.
#   launch.sh check|start RUN_ID WORKER_ID WORKDIR VENV_HASH|- EXPECTED_COMMIT|- REPLACE(0|1) FORCE(0|1) TIMEOUT|-
# FORCE kills stale holders of the TPU devices and removes the libtpu lockfile first.
# WORKDIR is relative to $HOME; the venv is ~/.tpuctl/venvs/VENV_HASH ("current": the last
# bootstrapped one, "-": none). `check` runs every
# preflight and starts nothing, so a refusal on one worker leaves every worker untouched.
# stdin: one frame (lib.sh: read_framed) holding the command (bash source), a NUL byte, then
# the env file (export K='v' lines); `start` checks it whole before it creates anything.
# Exit codes: 0 started; 20 venv missing; 21 commit mismatch; 22 a run is alive;
#             23 TPU busy; 24 run id already used; 65 the input arrived short or corrupted.
set -euo pipefail
action=$1
run_id=$2
worker=$3
workdir="$HOME/$4"
venv=$5
if [ "$venv" = current ]; then
  # the venv of the last successful bootstrap, if any
  venv=$(cat "$HOME/.tpuctl/venvs/current" 2>/dev/null || echo -)
fi
[ "$venv" != - ] && venv="$HOME/.tpuctl/venvs/$venv"
commit=$6
replace=$7
force=${8:-0}
limit=${9:--}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
runs="$HOME/.tpuctl/runs"
run_dir="$runs/$run_id"

if [ "$venv" != - ] && [ ! -f "$venv/.tpuctl-ready" ]; then
  echo "no ready venv at $venv: run \`tpuctl bootstrap\` first" >&2
  exit 20
fi
if [ ! -d "$workdir" ]; then
  echo "no checkout at $workdir: run \`tpuctl sync\` first" >&2
  exit 21
fi
if [ "$commit" != - ]; then
  head=$(git -C "$workdir" rev-parse --verify -q HEAD 2>/dev/null || echo none)
  if [ "$head" != "$commit" ]; then
    echo "checkout at ${head:0:12}, expected ${commit:0:12}: run \`tpuctl sync\`" >&2
    exit 21
  fi
fi

alive=()
if [ -d "$runs" ]; then
  for d in "$runs"/*/; do
    [ -f "$d/pgid" ] || continue
    [ -f "$d/exit_code" ] && continue
    if run_alive "$d"; then alive+=("$(basename "$d")"); fi
  done
fi
if [ ${#alive[@]} -gt 0 ]; then
  if [ "$replace" = 1 ] && [ "$action" = check ]; then
    :
  elif [ "$replace" = 1 ]; then
    for r in "${alive[@]}"; do bash "$here/stop.sh" "$r" 10 >/dev/null; done
  else
    echo "run ${alive[*]} is still alive: pass --replace, or \`tpuctl stop\` it" >&2
    exit 22
  fi
fi

if [ "$force" = 1 ] && [ "$action" = start ]; then
  bash "$here/busy.sh" kill
fi
busy=$(bash "$here/busy.sh" check || true)
if [ -n "$busy" ] && [ "$force" = 1 ] && [ "$action" = check ]; then
  busy=  # --force: start will kill the holders
fi
if [ -n "$busy" ] && [ "$replace" = 1 ] && [ "$action" = check ] && [ ${#alive[@]} -gt 0 ]; then
  busy=  # held by the run that --replace will stop
fi
if [ -n "$busy" ]; then
  echo "TPU busy: $busy" >&2
  exit 23
fi

if [ -e "$run_dir" ]; then
  echo "run id $run_id already exists on this worker" >&2
  exit 24
fi
if [ "$action" = check ]; then
  cat >/dev/null
  echo "ok"
  exit 0
fi
umask 077
mkdir -p "$runs"
payload=$(mktemp "$runs/.launch.XXXXXX")
trap 'rm -f "$payload"' EXIT
read_framed "$payload" || exit $?
mkdir "$run_dir"
{
  IFS= read -r -d '' cmd || true
  printf '%s\n' "$cmd" >"$run_dir/cmd"
  cat >"$run_dir/env"
} <"$payload"
printf '%s\n' "$run_id" >"$runs/latest.tmp" && mv -f "$runs/latest.tmp" "$runs/latest"

setsid nohup bash "$here/run.sh" "$run_dir" "$worker" "$workdir" "$venv" "$limit" \
  >/dev/null 2>&1 </dev/null &
# wait (bounded) until the supervisor has recorded its pid, so `status` right after is exact
for _ in $(seq 1 100); do
  [ -s "$run_dir/pgid" ] && break
  sleep 0.05
done
echo "started run=$run_id pid=$(cat "$run_dir/pid" 2>/dev/null || echo ?)"
