"""Where tpuctl keeps its local files. One place, so tests can isolate them with $HOME."""

from __future__ import annotations

from pathlib import Path


def tpuctl_home() -> Path:
    return Path.home() / ".tpuctl"


def ssh_dir() -> Path:
    return tpuctl_home() / "ssh"


def known_hosts_dir() -> Path:
    return ssh_dir() / "known_hosts.d"


def emulator_dir() -> Path:
    return tpuctl_home() / "emulator"


def worker_cache_dir() -> Path:
    return tpuctl_home() / "cache" / "workers"
