#!/usr/bin/env bash
# This worker's health, one machine-readable line per check:
#   doctor.sh VENV|- ADDR:PORT|- [TIMEOUT] [RUN]
# VENV: a venv whose jax/jaxlib/libtpu versions to report ("-": skip; "current": the last
# bootstrapped one, ~/.tpuctl/venvs/$(cat ~/.tpuctl/venvs/current), skip if none); ADDR:PORT: an address
# (worker 0's internal one) and port (the coordinator's) to try from here within TIMEOUT
# seconds (default 3; "-": skip); RUN "latest": also try the coordinator address of this
# worker's latest run (JAX_COORDINATOR_ADDRESS in its env file, the port JAX really uses),
# as check `run-port` ("-", the default: skip). Each line is
#   check=NAME status=ok|warn|fail|skip [KEY=VALUE...] [detail=free text to the end]
# in this order: disk-home, disk-tmp, tpu, lockfile, python, venv, packages, clock, metadata,
# port, run-port (only with RUN "latest").
# Reads only; changes nothing (a stale lockfile is reported, not removed).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
venv=${1:--}
target=${2:--}
timeout=${3:-3}
run=${4:--}
case "$timeout" in ''|*[!0-9.]*) echo "doctor.sh: TIMEOUT must be seconds, got $timeout" >&2; exit 2 ;; esac

# disk PATH NAME: free space and use of PATH's filesystem (df's POSIX format, 1K blocks).
# fail under 512 MB free or at 99% used, warn under 2 GB or from 90%.
disk() {
  local line avail pct status=ok detail=""
  line=$(df -Pk "$1" 2>/dev/null | tail -n 1) || line=""
  if [ -z "$line" ]; then
    echo "check=$2 status=warn detail=df cannot read $1"
    return
  fi
  # shellcheck disable=SC2086
  set -- "$1" "$2" $line
  avail=$((${6:-0} / 1024))
  pct=${7%\%}
  case "$pct" in ''|*[!0-9]*) pct=0 ;; esac
  if [ "$avail" -lt 512 ] || [ "$pct" -ge 99 ]; then
    status=fail
    detail=" detail=$1 is full: ${avail} MB free; free space (caches, checkpoints, old venvs)"
  elif [ "$avail" -lt 2048 ] || [ "$pct" -ge 90 ]; then
    status=warn
    detail=" detail=$1 is nearly full: ${avail} MB free"
  fi
  echo "check=$2 status=$status free_mb=$avail used_pct=$pct$detail"
}
disk "$HOME" disk-home
disk "${TMPDIR:-/tmp}" disk-tmp

# TPU devices held: pid and command of every holder (busy.sh's logic, lib.sh: tpu_holders)
mapfile -t holders < <(tpu_holders)
lock=$(tpu_lockfile)
if [ ${#holders[@]} -eq 0 ]; then
  echo "check=tpu status=ok holders=0"
else
  detail=""
  for pid in "${holders[@]}"; do
    detail="$detail${detail:+; }pid=$pid cmd=$(proc_cmd "$pid")"
  done
  echo "check=tpu status=fail holders=${#holders[@]} detail=$detail"
fi
if [ -e "$lock" ] && [ ${#holders[@]} -eq 0 ]; then
  echo "check=lockfile status=warn detail=stale $lock: no process holds it"
else
  echo "check=lockfile status=ok"
fi

# the image's Python, and whether it can make venvs (ensurepip: Ubuntu's python3-venv)
if version=$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null); then
  echo "check=python status=ok version=$version"
  if pip=$(python3 -m ensurepip --version 2>/dev/null); then
    echo "check=venv status=ok ensurepip=${pip#pip }"
  else
    echo "check=venv status=warn detail=python3 has no ensurepip (python3 -m venv fails): apt-get install python${version%.*}-venv, or make venvs with uv"
  fi
else
  echo "check=python status=fail detail=no python3 on PATH"
  echo "check=venv status=fail detail=no python3 on PATH"
fi

# package versions in the venv
if [ "$venv" = current ]; then
  current=$(cat "$HOME/.tpuctl/venvs/current" 2>/dev/null || true)
  case "$current" in
    ''|*/*|.*) venv=- ;;
    *) venv="$HOME/.tpuctl/venvs/$current" ;;
  esac
  [ "$venv" = - ] && skip_why=" detail=no bootstrapped venv yet" || skip_why=""
fi
if [ "$venv" = - ]; then
  echo "check=packages status=skip${skip_why:-}"
elif [ ! -x "$venv/bin/python" ]; then
  echo "check=packages status=fail detail=no venv at $venv (run bootstrap)"
else
  # a failure replaces, never appends to, what was printed ("$(cmd || echo x)" would append)
  versions=$("$venv/bin/python" - <<'PY' 2>/dev/null
from importlib import metadata
out = []
for name, dists in (("jax", ["jax"]), ("jaxlib", ["jaxlib"]),
                    ("libtpu", ["libtpu", "libtpu-nightly"])):
    found = "-"
    for dist in dists:
        try:
            found = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            pass
    out.append(f"{name}={found}")
print(" ".join(out))
PY
) || versions=error
  if [ "$versions" = error ]; then
    echo "check=packages status=fail detail=the venv's python cannot run: $venv"
  else
    echo "check=packages status=ok $versions"
  fi
fi

# the clock, for the client to compute this worker's offset
echo "check=clock status=ok epoch=$(date +%s.%N)"

# the TPU metadata this host registered with: its worker number and the slice's workers
# (GCE_METADATA_HOST where the emulator serves it, else GCE's own metadata server)
# (its own 5 s budget, not the port's TIMEOUT: a short port probe must not turn a loaded
# host's slow interpreter start into "no metadata server"; a complete answer counts even if
# the interpreter was then slow to exit)
md=$(timeout 5 python3 - "${GCE_METADATA_HOST:-metadata.google.internal}" 2>/dev/null <<'PY'
import sys, urllib.request
base = f"http://{sys.argv[1]}/computeMetadata/v1/instance/attributes/"
def get(key):
    req = urllib.request.Request(base + key, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=2) as r:
        return r.read().decode().strip()
worker, endpoints = get("agent-worker-number"), get("worker-network-endpoints")
print(f"worker={worker or '-'} workers={len([e for e in endpoints.split(',') if e])}")
PY
) || case "$md" in worker=*workers=[0-9]*) ;; *) md=error ;; esac
case "$md" in
  error) echo "check=metadata status=warn detail=no metadata server answers (not on a TPU VM?)" ;;
  worker=-*|*workers=0)
    echo "check=metadata status=fail $md detail=blank TPU metadata (agent-worker-number, worker-network-endpoints): this host did not register; recreate the node" ;;
  *) echo "check=metadata status=ok $md" ;;
esac

# can this worker reach ADDR:PORT? refused (nothing listens, but the network lets it
# through) and open are fine; no answer within TIMEOUT is a firewall dropping it
# try_port NAME ADDR PORT [KEY=VALUE]: one `check=NAME` line
try_port() {
  local name=$1 addr=$2 port=$3 extra=${4:+ $4} out rc
  # shellcheck disable=SC2016
  if out=$(timeout "$timeout" bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$addr" "$port" 2>&1); then
    echo "check=$name status=ok addr=$addr port=$port$extra result=open"
  else
    rc=$?
    if [ "$rc" = 124 ]; then
      echo "check=$name status=fail addr=$addr port=$port$extra result=filtered detail=no answer from $addr:$port within ${timeout}s: a firewall drops it (open the port between workers)"
    elif [[ $out == *refused* ]]; then
      echo "check=$name status=ok addr=$addr port=$port$extra result=closed"
    else
      echo "check=$name status=fail addr=$addr port=$port$extra result=error detail=${out##*: }"
    fi
  fi
}

# split_target ADDR:PORT: sets addr and port, or returns 1
split_target() {
  addr=${1%:*}
  port=${1##*:}
  [[ $port =~ ^[0-9]{1,5}$ ]] && [ -n "$addr" ] && [ "$addr" != "$1" ]
}

if [ "$target" = - ]; then
  echo "check=port status=skip"
else
  if ! split_target "$target"; then
    echo "doctor.sh: ADDR:PORT expected, got $target" >&2
    exit 2
  fi
  try_port port "$addr" "$port"
fi

# the latest run's own coordinator address (what its workers really connected to)
if [ "$run" = latest ]; then
  run_id=$(cat "$HOME/.tpuctl/runs/latest" 2>/dev/null || true)
  case "$run_id" in ''|*/*|.*) run_id="" ;; esac
  coord=""
  if [ -n "$run_id" ]; then
    # launch writes `export K=V` lines, V quoted by shlex only when it must be
    coord=$(sed -nE "s/^export JAX_COORDINATOR_ADDRESS='?([^' ]*)'?\$/\1/p" \
      "$HOME/.tpuctl/runs/$run_id/env" 2>/dev/null | tail -n 1 || true)
  fi
  if [ -z "$run_id" ]; then
    echo "check=run-port status=skip detail=no run on this worker yet"
  elif [ -z "$coord" ] || ! split_target "$coord"; then
    echo "check=run-port status=skip run=$run_id detail=the run records no coordinator address"
  else
    try_port run-port "$addr" "$port" "run=$run_id"
  fi
fi
