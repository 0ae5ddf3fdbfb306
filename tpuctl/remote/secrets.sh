#!/usr/bin/env bash
# Secrets live in ~/.tpuctl/secrets.env (0600), written atomically, sourced by jobs.
#   secrets.sh push   read the file from stdin (never argv) as one frame (lib.sh), check it
#                     whole, then replace the old file atomically; exit 65 leaves it as it was
#   secrets.sh list   print key names only: the variables sourcing the file exports, so a
#                     multi-line value never shows up as a key of its own
set -euo pipefail
umask 077
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
dir="$HOME/.tpuctl"
file="$dir/secrets.env"
mkdir -p "$dir"
case "${1:-}" in
  push)
    tmp=$(mktemp "$dir/.secrets.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    read_framed "$tmp" || exit $?
    chmod 600 "$tmp"
    mv -f "$tmp" "$file"
    trap - EXIT
    echo "keys=$(grep -c '^export ' "$file" || true)"
    ;;
  list)
    [ -f "$file" ] || exit 0
    # what a job sees: bash parses the quoting (tpuctl writes `export K='v'` lines); a clean
    # shell sources the file and lists what became exported, minus bash's own variables
    env -i bash --noprofile --norc -c '. "$1" >/dev/null 2>&1; compgen -e' _ "$file" \
      | grep -vxE 'PWD|OLDPWD|SHLVL|_' || true
    ;;
  *)
    echo "usage: secrets.sh push|list" >&2
    exit 2
    ;;
esac
