#!/usr/bin/env bash
# Shared helpers, sourced by the other worker scripts (never run on its own).

# group_alive PGID: true while any process of the group is alive. Zombies do not count:
# `kill -0 -PGID` succeeds on a killed process until its parent reaps it, which would make a
# dead run look alive for a while (and forever where nobody reaps).
group_alive() {
  local pgid=$1
  [ -n "$pgid" ] && [ "$pgid" != 0 ] || return 1
  kill -0 -- "-$pgid" 2>/dev/null || return 1
  # /proc/PID/stat after the command name: state ppid pgrp ...
  # (cat may fail on processes that vanish while it reads: that must not fail the check)
  { cat /proc/[0-9]*/stat 2>/dev/null || :; } | sed 's/^.*) //' \
    | awk -v g="$pgid" '$3 == g && $1 != "Z" { found = 1 } END { exit !found }'
}
