#!/usr/bin/env bash
# The README's test command: install everything the tests need into .venv, lint, type-check,
# then run the whole suite (unit, emulator, end-to-end). Works on a fresh Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests use for real: git (code sync), the OpenSSH client (ssh/ssh-config),
# curl (the second-user test calls the emulator as another uid, which cannot run this venv),
# e2fsprogs (emulated data disks are formatted with the real mkfs.ext4).
missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)  # data disks: real blkid/mkfs.ext4
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "please install: ${missing[*]}" >&2
    exit 2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

.venv/bin/ruff check .
.venv/bin/mypy tpuctl
# Three workers on two cores: the end-to-end tests mostly wait (SSH, guest-agent delays, runs'
# heartbeats), so the suite takes about half the time; whole modules per worker, longest first
# (tests/conftest.py). `bash scripts/test.sh -n 0` runs it in one process.
.venv/bin/python -m pytest -q -rs -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder "$@"
