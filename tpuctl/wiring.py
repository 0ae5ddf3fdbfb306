"""Which adapters a command works through, decided here and only here.

- Cloud: google-cloud-tpu over REST (`cloud/gcp.py`) against GCP or any TPU v2 endpoint (the
  emulator), built on the first API call (`LazyCloud`);
- Workers: the per-user connection daemon (`workers/mux.py`) for short commands when
  connection persistence is on, else direct asyncssh (`workers/ssh.py`);
- Local: this machine's files (`ops/local.py`); Http: aiohttp (`workers/http.py`);
- Ledger: ~/.tpuctl/ledger.jsonl (`ledger.py`), what `cost` reads after a node is gone;
- `--dry-run`: recording adapters (`tpuctl/dryrun/`) that change nothing and say what would
  have been sent.

Everything heavy is imported when first used, so `--help` and commands answered from the
worker cache stay light (tests/unit/test_structure.py, tests/e2e/test_worker_cache.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tpuctl.cloud.base import Cloud
from tpuctl.config import (
    CloudConfig,
    persist_seconds,
    require_project_zone,
    resolve,
    ssh_setting,
    worker_wait_setting,
)
from tpuctl.ledger import FileLedger
from tpuctl.ops.local import FileLocal
from tpuctl.ops.ports import HttpReply, Ports
from tpuctl.ops.route import RouteFlags, resolve_route
from tpuctl.workers.base import SshTarget, Workers

if TYPE_CHECKING:
    from tpuctl.cloud.gcp import GcpCloud
    from tpuctl.dryrun.transcript import Transcript
    from tpuctl.workers.answered import Answer

# The first worker calls of this command, already made by the fast path (cli/fast/handoff.py),
# and whether the daemon failed it (then the command connects in process)
_ANSWERED: ContextVar[tuple[Answer, ...]] = ContextVar("tpuctl_answered", default=())
_BYPASS: ContextVar[bool] = ContextVar("tpuctl_bypass_daemon", default=False)


@contextmanager
def answered(answers: Sequence[Answer], *, bypass_daemon: bool = False) -> Iterator[None]:
    """While the full CLI finishes a command the fast path started: the first `Workers` it
    opens answers its first calls with `answers` (workers/answered.py); `bypass_daemon`: the
    daemon did not acknowledge the fast path's request, so connect in process."""
    tokens = (_ANSWERED.set(tuple(answers)), _BYPASS.set(bypass_daemon))
    try:
        yield
    finally:
        _ANSWERED.reset(tokens[0])
        _BYPASS.reset(tokens[1])


class LazyCloud:
    """The Cloud port whose configuration is resolved on first use and whose google-cloud
    adapter is built on the first API call.

    google-cloud-tpu costs ~0.25 s to import; a command answered from the worker cache
    (ops/worker_cache.py) never pays it. Resolving late lets a command check its own input
    first: a bad argument is named before a missing project is.
    """

    def __init__(self, api_endpoint: str | None, project: str | None, zone: str | None
                 ) -> None:
        self._options = (api_endpoint, project, zone)
        self._where: tuple[str, str, str | None] | None = None
        self._real: GcpCloud | None = None

    def _resolved(self) -> tuple[str, str, str | None]:
        if self._where is None:
            api_endpoint, project, zone = self._options
            cfg: CloudConfig = resolve(api_endpoint=api_endpoint, project=project, zone=zone)
            p, z = require_project_zone(cfg)
            self._where = (p, z, cfg.endpoint.value)
        return self._where

    @property
    def project(self) -> str:
        return self._resolved()[0]

    @property
    def zone(self) -> str:
        return self._resolved()[1]

    @property
    def endpoint(self) -> str | None:
        return self._resolved()[2]

    def in_zone(self, zone: str) -> Cloud:
        other = LazyCloud(self._options[0], self._options[1], zone)
        if self._real is not None:
            other._real = self._real.in_zone(zone)
            other._where = (self.project, zone, self.endpoint)
        return cast(Cloud, other)

    def __getattr__(self, attr: str) -> Any:  # only called for API verbs
        if attr.startswith("_"):  # never for our own state (copy/pickle probe those)
            raise AttributeError(attr)
        if self._real is None:
            from tpuctl.cloud.gcp import GcpCloud

            project, zone, endpoint = self._resolved()
            self._real = GcpCloud(project=project, zone=zone, endpoint=endpoint)
        return getattr(self._real, attr)


def connect(targets: Sequence[SshTarget], *, key_path: Path, pool: str, shared: bool,
            connect_timeout: float, connect_attempts: int, max_concurrency: int) -> Workers:
    """The `Connect` port: through the connection daemon for a short command while
    persistence is on (config.persist_setting), else in this process. Tunnelled workers
    (a jump host, a proxy command, IAP) always connect in this process: the tunnel runs as
    this command's child, with this shell's environment (agent, gcloud's configuration)."""
    tunnelled = any(t.jump or t.proxy_command for t in targets)
    persist = persist_seconds() if shared and not tunnelled and not _BYPASS.get() else 0.0
    workers: Workers
    if persist > 0:
        from tpuctl.workers.mux import MuxWorkers

        workers = MuxWorkers(targets, key_path=key_path, pool=pool, persist=persist,
                             max_concurrency=max_concurrency, connect_timeout=connect_timeout,
                             connect_attempts=connect_attempts)
    else:
        from tpuctl.workers.ssh import SshWorkers

        workers = SshWorkers(targets, key_path=key_path, max_concurrency=max_concurrency,
                             connect_timeout=connect_timeout, connect_attempts=connect_attempts)
    answers = _ANSWERED.get()
    if answers:
        from tpuctl.workers.answered import AnsweredWorkers

        _ANSWERED.set(())  # the first pool only
        workers = AnsweredWorkers(workers, answers)
    return workers


class _Http:
    """The `Http` port, importing aiohttp only when a request is made."""

    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float
                        ) -> HttpReply:
        from tpuctl.workers.http import AiohttpClient

        return await AiohttpClient().post_json(url, body, timeout=timeout)


def notice(line: str) -> None:
    """An operation's word while it waits (ops' `Ports.notice`): one line on stderr."""
    sys.stderr.write(f"tpuctl: {line}\n")
    sys.stderr.flush()


def ports(api_endpoint: str | None = None, project: str | None = None,
          zone: str | None = None, *, via: RouteFlags | None = None,
          dry_run: Transcript | None = None, read_api: bool = True) -> Ports:
    """The ports for a command's cloud options. `via`: the command's flags for reaching
    workers (with tpuctl.yaml's `ssh:` block under them); `dry_run`: record into this
    transcript instead of changing anything; `read_api=False` (create and up): not even read
    the API, answering as for a node that does not exist yet."""
    from tpuctl.cloud.groups import GroupCloud

    # a multislice group's name stands for all its slices (cloud/groups.py)
    cloud = cast(Cloud, GroupCloud(cast(Cloud, LazyCloud(api_endpoint, project, zone))))
    block, source = ssh_setting()
    flags = via or RouteFlags()
    route = resolve_route(internal_ip=flags.internal_ip, proxy_jump=flags.proxy_jump,
                          proxy_command=flags.proxy_command, iap=flags.iap, file=block,
                          file_source=source)
    real = Ports(cloud=cloud, connect=connect, local=FileLocal(), http=_Http(), route=route,
                 notice=notice, worker_wait=worker_wait_setting()[0], ledger=FileLedger())
    if dry_run is None:
        return real
    from tpuctl.dryrun import recording_ports

    return recording_ports(real, dry_run, read_api=read_api)
