#!/usr/bin/env bash
# A venv per worker, built detached (an SSH drop does not kill it), cached by a marker.
#   bootstrap.sh start HASH PYTHON|- TORCH(cpu|-) PROJECT_DIR|-   requirements on stdin, as
#                  one frame (lib.sh): a short or corrupted one exits 65 and starts nothing
#   bootstrap.sh status HASH       one line: state=running|done|failed|none exit=N
#   bootstrap.sh run HASH ...      (internal: the detached worker)
# Layout: ~/.tpuctl/venvs/HASH/ (the venv, .tpuctl-ready marker when complete),
#         ~/.tpuctl/venvs/HASH.req, HASH.pid, HASH.exit; log ~/.tpuctl/logs/bootstrap.log
set -euo pipefail
mode=$1
hash=$2
base="$HOME/.tpuctl/venvs"
venv="$base/$hash"
logs="$HOME/.tpuctl/logs"
log="$logs/bootstrap.log"
mkdir -p "$base" "$logs"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# Is the detached runner of this hash still at work? A runner that finished wrote HASH.exit
# (failure) or the marker (success) as its last act, and until its new parent (init) reaps it,
# it lingers as a zombie that `kill -0` still reports alive: neither counts as running, or a
# retry right after a failure would find the old run "running" and never start a new one.
running() {
  [ -f "$base/$hash.pid" ] && [ ! -f "$base/$hash.exit" ] || return 1
  proc_alive "$(cat "$base/$hash.pid")"
}

case "$mode" in
  start)
    if [ -f "$venv/.tpuctl-ready" ]; then
      cat >/dev/null
      echo "state=done cached=1"
      exit 0
    fi
    if running; then
      cat >/dev/null
      echo "state=running cached=0"
      exit 0
    fi
    read_framed "$base/.$hash.req.tmp" || { code=$?; rm -f "$base/.$hash.req.tmp"; exit $code; }
    mv -f "$base/.$hash.req.tmp" "$base/$hash.req"
    rm -f "$base/$hash.exit"
    : >"$log"
    setsid nohup bash "$0" run "$hash" "$3" "$4" "$5" >>"$log" 2>&1 </dev/null &
    echo $! >"$base/$hash.pid"
    echo "state=started cached=0"
    ;;
  status)
    # Is the runner alive, asked *before* its result files are read: a runner that finishes
    # between the two looks has written its marker (or HASH.exit) by the second, so it is
    # never taken for one that died without a word.
    alive=0
    if running; then alive=1; fi
    if [ -f "$venv/.tpuctl-ready" ]; then
      echo "state=done exit=0"
    elif [ -f "$base/$hash.exit" ]; then
      echo "state=failed exit=$(cat "$base/$hash.exit")"
    elif [ "$alive" = 1 ]; then
      echo "state=running exit=-"
    elif [ -f "$base/$hash.pid" ]; then
      echo "state=failed exit=died"
    else
      echo "state=none exit=-"
    fi
    ;;
  run)
    python=$3
    torch=$4
    project=$5
    finish() {
      code=$?
      [ -f "$venv/.tpuctl-ready" ] || echo "$code" >"$base/$hash.exit"
    }
    trap finish EXIT
    step() { echo "[tpuctl-bootstrap] $*"; }
    step "start $(date -u +%Y-%m-%dT%H:%M:%SZ) hash=$hash python=$python torch=$torch"

    export PATH="$HOME/.local/bin:$HOME/.tpuctl/tools/bin:$PATH"
    if ! command -v uv >/dev/null 2>&1; then
      step "installing uv"
      # the user site first; then past PEP 668's guard; then a small tools venv of its own
      python3 -m pip install --user --quiet uv 2>/dev/null \
        || python3 -m pip install --user --quiet --break-system-packages uv 2>/dev/null \
        || { python3 -m venv "$HOME/.tpuctl/tools" && "$HOME/.tpuctl/tools/bin/pip" install --quiet uv; } \
        || { step "cannot install uv: install python3-pip and python3-venv (apt-get install -y python3-pip python3-venv)"; exit 40; }
    fi
    step "uv $(uv --version | cut -d' ' -f2)"

    rm -rf "$venv"
    if [ "$python" != - ]; then
      # uv finds a matching interpreter, or installs a managed one when the image's is too old.
      # If it cannot (no network to its download host, downloads disabled, no such version),
      # stop here with exit 41: a missing interpreter is not a package-index problem, and
      # retrying the whole bootstrap would only repeat the same download failure.
      if ! uv python find "$python" >/dev/null 2>&1; then
        step "no Python $python on this worker: uv python install $python"
        if ! uv python install "$python"; then
          step "python-missing: Python $python is not on this worker and uv could not install it"
          exit 41
        fi
      fi
      step "creating venv with Python $python"
      uv venv --quiet --python "$python" "$venv"
    else
      step "creating venv with $(python3 --version 2>&1)"
      # uv venv needs no ensurepip, so images without python3-venv work too
      uv venv --quiet --python "$(command -v python3)" "$venv"
    fi

    args=(--python "$venv/bin/python")
    if [ "$torch" = cpu ]; then
      # CPU-only torch wheels instead of gigabytes of CUDA ones
      args+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
    fi
    if [ -s "$base/$hash.req" ]; then
      step "installing requirements"
      uv pip install "${args[@]}" -r "$base/$hash.req"
    fi
    if [ "$project" != - ]; then
      step "installing the project at $project"
      uv pip install "${args[@]}" -e "$project"
    fi
    date -u +%Y-%m-%dT%H:%M:%SZ >"$venv/.tpuctl-ready"
    printf '%s\n' "$hash" >"$base/current.tmp" && mv -f "$base/current.tmp" "$base/current"
    rm -f "$base/$hash.exit"
    step "done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    ;;
  *)
    echo "usage: bootstrap.sh start|status|run HASH ..." >&2
    exit 2
    ;;
esac
