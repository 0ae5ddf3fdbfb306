#!/usr/bin/env bash
# Readiness facts for one run on this worker, in one line:
#   probe.sh RUN_ID WORKER_ID PATTERN|- URL|- TIMEOUT
# log=1 when the worker's log has a line matching PATTERN (extended regex);
# http=CODE from GET URL with a TIMEOUT-second limit (000 when no answer). The probe only
# gives up on its own request: a server busy compiling is never killed by it.
set -euo pipefail
run_id=$1
worker=$2
pattern=$3
url=$4
timeout=$5
log="$HOME/.tpuctl/runs/$run_id/worker$worker.log"
seen=0
if [ "$pattern" != - ] && [ -f "$log" ] && grep -E -q -- "$pattern" "$log"; then
  seen=1
fi
code=-
if [ "$url" != - ]; then
  code=$(python3 - "$url" "$timeout" <<'PY' 2>/dev/null || echo 000
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
)
fi
echo "log=$seen http=$code"
