#!/usr/bin/env bash
# Put ~/work/<repo> at one exact commit.
#   sync.sh origin REPO SHA URL   fetch from the repository's remote
#   sync.sh bundle REPO SHA       read a git bundle (with refs/tpuctl/sync) from stdin
#   sync.sh head REPO             print the checked-out commit (or "none")
# Prints "commit=<sha> changed=0|1". Never deletes untracked files (outputs live there too).
set -euo pipefail
mode=$1
repo=$2
dir="$HOME/work/$repo"

head_of() { git -C "$dir" rev-parse --verify -q HEAD 2>/dev/null || echo none; }

if [ "$mode" = head ]; then
  echo "commit=$(head_of)"
  exit 0
fi
sha=$3

if [ -d "$dir/.git" ] && [ "$(head_of)" = "$sha" ] && git -C "$dir" diff --quiet HEAD 2>/dev/null; then
  [ "$mode" = bundle ] && cat >/dev/null
  echo "commit=$sha changed=0"
  exit 0
fi

mkdir -p "$dir"
[ -d "$dir/.git" ] || git -C "$dir" init -q
if git -C "$dir" cat-file -e "$sha^{commit}" 2>/dev/null; then
  mode="have-$mode"  # the commit is already here: nothing to fetch
  [ "$mode" = have-bundle ] && cat >/dev/null
fi
case "$mode" in
  have-*) ;;
  origin)
    url=$4
    git -C "$dir" fetch -q "$url" "$sha" 2>/dev/null \
      || git -C "$dir" fetch -q --tags "$url" '+refs/heads/*:refs/remotes/tpuctl/*'
    ;;
  bundle)
    tmp=$(mktemp "${TMPDIR:-/tmp}/tpuctl-bundle.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    cat >"$tmp"
    git -C "$dir" fetch -q "$tmp" "+refs/tpuctl/sync:refs/tpuctl/sync"
    ;;
  *)
    echo "sync.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
if ! git -C "$dir" cat-file -e "$sha^{commit}" 2>/dev/null; then
  echo "commit $sha is not reachable from the source" >&2
  exit 3
fi
git -C "$dir" -c advice.detachedHead=false checkout -q --force --detach "$sha"
if [ -f "$dir/.gitmodules" ] && [ "$mode" = origin ]; then
  git -C "$dir" submodule update -q --init --recursive
fi
echo "commit=$(head_of) changed=1"
