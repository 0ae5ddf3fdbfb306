#!/usr/bin/env bash
# Secrets live in ~/.tpuctl/secrets.env (0600), written atomically, sourced by jobs.
#   secrets.sh push   read the file from stdin (never argv), replace atomically
#   secrets.sh list   print key names only
set -euo pipefail
umask 077
dir="$HOME/.tpuctl"
file="$dir/secrets.env"
mkdir -p "$dir"
case "${1:-}" in
  push)
    tmp=$(mktemp "$dir/.secrets.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    cat >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$file"
    trap - EXIT
    echo "keys=$(grep -c '^export ' "$file" || true)"
    ;;
  list)
    [ -f "$file" ] || exit 0
    sed -n 's/^export \([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$file"
    ;;
  *)
    echo "usage: secrets.sh push|list" >&2
    exit 2
    ;;
esac
