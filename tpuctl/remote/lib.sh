#!/usr/bin/env bash
# Shared helpers, sourced by the other worker scripts (never run on its own).

# group_alive PGID: true while any process of the group is alive. Zombies do not count:
# `kill -0 -PGID` succeeds on a killed process until its parent reaps it, which would make a
# dead run look alive for a while (and forever where nobody reaps).
# With START (the leader's start time, see proc_start), a live process whose pid is PGID but
# which started at another time is a stranger that reused the number once the group was gone:
# the group counts as dead, so it is never signalled (the kernel frees a pgid only when no
# member is left, so a group whose leader has exited is still the original one).
group_alive() {
  local pgid=$1 start=${2:-} now
  [ -n "$pgid" ] && [ "$pgid" != 0 ] || return 1
  kill -0 -- "-$pgid" 2>/dev/null || return 1
  if [ -n "$start" ] && now=$(proc_start "$pgid"); then
    [ "$now" = "$start" ] || return 1
  fi
  # /proc/PID/stat after the command name: state ppid pgrp ...
  # (cat may fail on processes that vanish while it reads: that must not fail the check)
  { cat /proc/[0-9]*/stat 2>/dev/null || :; } | sed 's/^.*) //' \
    | awk -v g="$pgid" '$3 == g && $1 != "Z" { found = 1 } END { exit !found }'
}

# proc_start PID: when PID started (clock ticks since boot, field 22 of /proc/PID/stat).
proc_start() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }  # after the command name, which may hold spaces and parentheses
  # shellcheck disable=SC2086
  set -- $rest
  [ -n "${20:-}" ] || return 1
  printf '%s\n' "${20}"
}

# run_alive RUN_DIR: the run's process group is alive (and is still the run's).
run_alive() {
  group_alive "$(cat "$1/pgid" 2>/dev/null || echo 0)" "$(cat "$1/pgid_start" 2>/dev/null || true)"
}
