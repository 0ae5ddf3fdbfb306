"""The per-node worker cache: when an entry is trusted, and when it is not."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import Any

import pytest

from tpuctl.model import Access, Login, Slice, Worker
from tpuctl.ops import worker_cache

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample tpuctl"


class _Cloud:
    def __init__(self, endpoint: str | None = "http://127.0.0.1:1", project: str = "p",
                 zone: str = "z") -> None:
        self.endpoint, self.project, self.zone = endpoint, project, zone


def _slice(**kw: Any) -> Slice:
    base = Slice(name="job", project="p", zone="z", accelerator_type="v6e-16",
                 runtime_version="v2-alpha-tpuv6e", state="READY",
                 labels={"managed-by": "tpuctl"}, metadata={"ssh-keys": "alice:ssh-ed25519 X",
                                                             "startup": "secret stuff"},
                 workers=tuple(Worker(i, f"10.0.0.{i}", 22, f"ssh-ed25519 HOST{i}")
                               for i in range(4)))
    return dataclasses.replace(base, **kw)


LOGIN = Login("alice", "metadata", "test", keys_changed_at=123.0)


def _access(**kw: Any) -> Access:
    return Access(_slice(**kw), LOGIN)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))


def test_round_trip_keeps_workers_and_host_keys_but_no_metadata() -> None:
    cloud, sl = _Cloud(), _slice(workers=(Worker(0, "10.0.0.1", 22, "ssh-ed25519 H",
                                                 external_ip="34.1.1.1", hostname="t1v-w-0"),))
    worker_cache.store(cloud, Access(sl, LOGIN), public_key=KEY)  # type: ignore[arg-type]
    got = worker_cache.load(cloud, "job", public_key=KEY)  # type: ignore[arg-type]
    assert got == Access(dataclasses.replace(sl, metadata={}), LOGIN)
    files = list((Path.home() / ".tpuctl" / "cache" / "workers").iterdir())
    assert len(files) == 1 and "secret stuff" not in files[0].read_text()
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_entry_expires_after_the_ttl() -> None:
    cloud = _Cloud()
    worker_cache.store(cloud, _access(), public_key=KEY, now=1000.0)  # type: ignore[arg-type]
    assert worker_cache.load(cloud, "job", public_key=KEY,  # type: ignore[arg-type]
                             now=1000.0 + worker_cache.TTL_SECONDS - 1) is not None
    assert worker_cache.load(cloud, "job", public_key=KEY,  # type: ignore[arg-type]
                             now=1000.0 + worker_cache.TTL_SECONDS + 1) is None
    # a clock that went backwards does not make an entry live forever
    assert worker_cache.load(cloud, "job", public_key=KEY, now=900.0) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("other", [
    _Cloud(endpoint="http://127.0.0.1:2"),  # another emulator reusing the node name
    _Cloud(endpoint=None),                  # real GCP
    _Cloud(project="q"),
    _Cloud(zone="y"),
])
def test_entry_belongs_to_one_endpoint_project_and_zone(other: _Cloud) -> None:
    worker_cache.store(_Cloud(), _access(), public_key=KEY)  # type: ignore[arg-type]
    assert worker_cache.load(other, "job", public_key=KEY) is None  # type: ignore[arg-type]


def test_entry_written_for_another_key_is_ignored() -> None:
    cloud = _Cloud()
    worker_cache.store(cloud, _access(), public_key=KEY)  # type: ignore[arg-type]
    assert worker_cache.load(cloud, "job", public_key=KEY + "2") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    {"state": "PREEMPTED"},
    {"workers": ()},
    {"workers": (Worker(0, "10.0.0.0", 22, None),)},  # a host key not yet pinned
])
def test_unusable_slices_are_never_answered_from_the_cache(bad: dict[str, Any]) -> None:
    cloud = _Cloud()
    worker_cache.store(cloud, _access(**bad), public_key=KEY)  # type: ignore[arg-type]
    assert worker_cache.load(cloud, "job", public_key=KEY) is None  # type: ignore[arg-type]


def test_forget_and_corrupt_entries() -> None:
    cloud = _Cloud()
    worker_cache.store(cloud, _access(), public_key=KEY)  # type: ignore[arg-type]
    worker_cache.forget(cloud, "job")  # type: ignore[arg-type]
    assert worker_cache.load(cloud, "job", public_key=KEY) is None  # type: ignore[arg-type]
    worker_cache.forget(cloud, "job")  # type: ignore[arg-type]  # absent: no error
    worker_cache.store(cloud, _access(), public_key=KEY)  # type: ignore[arg-type]
    for f in (Path.home() / ".tpuctl" / "cache" / "workers").iterdir():
        f.write_text("{not json")
    assert worker_cache.load(cloud, "job", public_key=KEY) is None  # type: ignore[arg-type]


def test_the_last_key_change_outlives_the_entry_s_freshness() -> None:
    cloud = _Cloud()
    assert worker_cache.key_change(cloud, "job") == 0.0  # type: ignore[arg-type]
    worker_cache.store(cloud, _access(), public_key=KEY, now=1.0)  # type: ignore[arg-type]
    assert worker_cache.load(cloud, "job", public_key=KEY) is None  # type: ignore[arg-type]
    assert worker_cache.key_change(cloud, "job") == 123.0  # type: ignore[arg-type]


def _stored_entry(route: Any, login: Login = LOGIN) -> dict[str, Any]:
    """An entry as `ensure_access` leaves it: targets made by the route-aware ssh_targets."""
    from tpuctl.ops.route import ssh_targets

    cloud = _Cloud()
    sl = _slice(workers=tuple(Worker(i, f"10.0.0.{i}", 22, f"ssh-ed25519 HOST{i}",
                                     external_ip=f"34.0.0.{i}", hostname=f"t1v-w-{i}")
                              for i in range(2)))
    worker_cache.store(cloud, Access(sl, login),  # type: ignore[arg-type]
                       public_key=KEY, targets=ssh_targets(sl, login.user, route))
    entry = worker_cache.read_entry(worker_cache.node_identity(cloud, "job"),  # type: ignore[arg-type]
                                    "job", public_key=KEY)
    assert entry is not None
    return entry


def test_fast_path_takes_the_default_way_in_with_keys_still_settling() -> None:
    import time

    from tpuctl.ops.route import SshRoute

    settling = Login("alice", "metadata", "test", keys_changed_at=time.time())
    targets = worker_cache.fast_targets(_stored_entry(SshRoute(), settling), "alice")
    assert targets is not None
    assert [(t["host"], t["username"], t["host_key"]) for t in targets] == \
        [("34.0.0.0", "alice", "ssh-ed25519 HOST0"), ("34.0.0.1", "alice", "ssh-ed25519 HOST1")]


@pytest.mark.parametrize("route,login,user", [
    ({"internal_ip": True}, LOGIN, "alice"),  # internal addresses: not what the fast path uses
    ({"proxy_jump": "bob@jump:22"}, LOGIN, "alice"),  # a tunnel runs in the full CLI's process
    ({"proxy_command": "nc {host} {port}"}, LOGIN, "alice"),
    ({}, Login("alice_example_com", "oslogin", "test"), "alice"),  # OS Login's POSIX user
    ({}, Login("alice", "oslogin", "test"), "alice"),  # OS Login, same name
    ({}, LOGIN, "bob"),  # stored for another local user
])
def test_fast_path_declines_targets_it_cannot_reach_identically(
        route: dict[str, Any], login: Login, user: str) -> None:
    from tpuctl.ops.route import SshRoute

    assert worker_cache.fast_targets(_stored_entry(SshRoute(**route), login), user) is None


def test_fast_path_declines_an_entry_without_one_target_per_worker() -> None:
    from tpuctl.ops.route import SshRoute

    entry = _stored_entry(SshRoute())
    assert worker_cache.fast_targets({**entry, "targets": entry["targets"][:1]}, "alice") is None
    assert worker_cache.fast_targets({**entry, "targets": []}, "alice") is None
