#!/usr/bin/env bash
# What `tpuctl top` shows of one worker, in one round: the run, the host, the TPU, the log.
#   top.sh RUN_ID|- WORKER_ID WINDOW_MS
# Prints, one line each (key=value words; `log` and `reason=` run to the end of the line):
#   run run=ID state=running|exited|dead|missing started_at=T|- heartbeat_age=S|-
#       exit_code=N|- ended_at=EPOCH|- stopped=0|1
#   host now=EPOCH ncpu=N clk_tck=HZ cpu_busy=TICKS cpu_total=TICKS run_ticks=TICKS|-
#       mem_total_kb=N mem_avail_kb=N load1=F load5=F load15=F [cpu_pct=P run_cpu_pct=P]
#   tpu ... and duty/hbm lines (tpu_metrics.py), or `tpu source=none reason=...`
#   log LAST LINE OF THE RUN'S LOG (at most 400 bytes; the client strips control bytes)
# Counters are cumulative: the client turns two rounds into rates. With WINDOW_MS > 0 (the
# first round), this script samples twice, WINDOW_MS apart, and prints the rates itself.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
run_id=$1
worker=$2
window_ms=$3
here=$(dirname "$0")
runs="$HOME/.tpuctl/runs"
if [ "$run_id" = - ]; then
  run_id=$(cat "$runs/latest" 2>/dev/null || true)
fi
d="$runs/${run_id:-none}"

# -- the run ---------------------------------------------------------------------------------
pgid=
if [ -z "$run_id" ] || [ ! -d "$d" ]; then
  echo "run run=${run_id:--} state=missing"
else
  now=$(date +%s)
  run_state "$d"
  if [ "$state" = running ]; then
    pgid=$(cat "$d/pgid" 2>/dev/null || true)
  fi
  echo "run run=$run_id state=$state started_at=$(cat "$d/started_at" 2>/dev/null || echo -)" \
    "heartbeat_age=$((now - beat)) exit_code=$(cat "$d/exit_code" 2>/dev/null || echo -)" \
    "ended_at=$ended stopped=$([ -f "$d/stopped" ] && echo 1 || echo 0)"
fi

# -- the host --------------------------------------------------------------------------------
# cpu: busy and total ticks of the host; run: user+system ticks of the run's process group
sample() {
  read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
  local run=-
  if [[ $pgid =~ ^[0-9]+$ ]]; then
    # /proc/PID/stat after the command name: state ppid pgrp ... utime(12) stime(13)
    run=$({ cat /proc/[0-9]*/stat 2>/dev/null || :; } | sed 's/^.*) //' \
      | awk -v g="$pgid" '$3 == g { t += $12 + $13 } END { print t + 0 }')
  fi
  echo "$((user + nice + system + irq + softirq + steal))" \
    "$((user + nice + system + idle + iowait + irq + softirq + steal))" "$run"
}
read -r busy total run_ticks < <(sample)
rates=
if [ "$window_ms" -gt 0 ] 2>/dev/null; then
  sleep "$(awk -v ms="$window_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
  read -r busy2 total2 run2 < <(sample)
  rates=$(awk -v b1="$busy" -v t1="$total" -v b2="$busy2" -v t2="$total2" -v r1="$run_ticks" \
    -v r2="$run2" -v hz="$(getconf CLK_TCK)" -v ms="$window_ms" 'BEGIN {
      dt = t2 - t1; cpu = dt > 0 ? 100 * (b2 - b1) / dt : 0
      out = sprintf("cpu_pct=%.1f", cpu)
      if (r1 != "-" && r2 != "-") out = out sprintf(" run_cpu_pct=%.1f", 100 * (r2 - r1) / hz / (ms / 1000))
      print out }')
  busy=$busy2 total=$total2 run_ticks=$run2
fi
mem_total=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
mem_avail=$(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo)
read -r load1 load5 load15 _ </proc/loadavg
echo "host now=$(date +%s.%N) ncpu=$(nproc) clk_tck=$(getconf CLK_TCK) cpu_busy=$busy" \
  "cpu_total=$total run_ticks=$run_ticks mem_total_kb=${mem_total:-0}" \
  "mem_avail_kb=${mem_avail:-0} load1=$load1 load5=$load5 load15=$load15 $rates"

# -- the TPU (libtpu's metrics service; the emulator names its own) ---------------------------
addr=${TPUCTL_TPU_METRICS_ADDR:-}
if [ -z "$addr" ]; then
  ports=$(sed -n "s/^export TPU_RUNTIME_METRICS_PORTS='\{0,1\}\([0-9,]*\)'\{0,1\}$/\1/p" \
    "$d/env" 2>/dev/null || true)
  addr="localhost:${ports%%,*}"
  [ "$addr" != localhost: ] || addr=localhost:8431
fi
venv=$(cat "$HOME/.tpuctl/venvs/current" 2>/dev/null || true)
py=
if [[ $venv =~ ^[0-9a-f]+$ ]] && [ -x "$HOME/.tpuctl/venvs/$venv/bin/python" ]; then
  py="$HOME/.tpuctl/venvs/$venv/bin/python"  # the run's own interpreter: grpcio if it has it
elif command -v python3 >/dev/null; then
  py=python3
fi
if [ -n "$py" ]; then
  "$py" "$here/tpu_metrics.py" "$addr" 2 2>/dev/null \
    || echo "tpu source=none addr=$addr reason=the metrics reader failed ($py)"
else
  echo "tpu source=none addr=$addr reason=no python3 on this worker"
fi

# -- the log ---------------------------------------------------------------------------------
line=
if [ -f "$d/worker$worker.log" ]; then
  line=$({ tail -c 4096 "$d/worker$worker.log" || :; } | { tail -n 1 || :; } \
    | { head -c 400 || :; } | tr -d '\n')
fi
printf 'log %s\n' "$line"
