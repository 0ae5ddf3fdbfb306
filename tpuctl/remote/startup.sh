#!/usr/bin/env bash
# Waits (at most TIMEOUT seconds) for this boot's startup script to finish, as GCP's guest
# agent reports it in the journal, and says how it ended, in one line:
#   startup.sh TIMEOUT EXPECT
#   -> "startup=done status=N" | "startup=none" | "startup=running"
# EXPECT=1: the node's metadata has a startup script, so a journal without the unit's lines
# yet means "not started", not "none". The lines after the state are the script's last
# output lines (for a failure's message).
set -euo pipefail
timeout=$1
expect=$2
unit=google-startup-scripts.service
if ! command -v journalctl >/dev/null 2>&1; then  # not a systemd machine: no guest agent
  echo "startup=none"
  exit 0
fi
deadline=$(( $(date +%s) + timeout ))
# The journal as this user may read it (on GCP the `adm` group can); with nothing of the
# unit's in it, as root through passwordless sudo when there is one (an OS Login user
# without `adm`).
journal() {
  local out
  out=$(journalctl -b -u "$unit" -o cat --no-pager 2>/dev/null || true)
  if ! grep -q -i -e "startup script" <<<"$out" && sudo -n true 2>/dev/null; then
    out=$(sudo -n journalctl -b -u "$unit" -o cat --no-pager 2>/dev/null || true)
  fi
  printf '%s\n' "$out"
}
while :; do
  log=$(journal)
  if grep -q -e "Finished running startup scripts" -e "No startup scripts to run" <<<"$log"; then
    status=0
    # the 2023-2024 agents: "startup-script exit status N"; the newest: 'Script
    # "startup-script" failed with error: exit status N'; a killed one: "signal: killed"
    line=$(grep -E -e 'startup-script exit status [0-9]+' \
      -e 'Script "startup-script" failed with error: exit status [0-9]+' <<<"$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
      status=${line##* }
    elif grep -q -e 'startup-script signal: ' <<<"$log"; then
      status=137
    fi
    if grep -q "No startup scripts to run" <<<"$log"; then
      echo "startup=none"
    else
      echo "startup=done status=$status"
      grep '^startup-script: ' <<<"$log" | tail -n 5 || true
    fi
    exit 0
  fi
  if [ "$expect" != 1 ] && ! grep -q -e "Starting startup scripts" -e "Found startup-script" <<<"$log"; then
    echo "startup=none"
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "startup=running"
    grep '^startup-script: ' <<<"$log" | tail -n 5 || true
    exit 0
  fi
  sleep 0.5
done
