"""One slice, its workers, and one SSH connection per worker reused by every step.

`up` runs sync, secrets, bootstrap and launch through one session, so each worker is
connected to once. Remote scripts are installed once per content hash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tpuctl import backoff
from tpuctl.aio import gather_or_cancel
from tpuctl.cloud.base import Cloud
from tpuctl.errors import ExitCode, RemoteCommandError
from tpuctl.model import Login, Slice
from tpuctl.ops import worker_cache
from tpuctl.ops.access import cached_access, ensure_access, keys_settling
from tpuctl.ops.ports import Ports
from tpuctl.ops.results import is_unreachable as is_unreachable
from tpuctl.ops.results import parse_kv as parse_kv
from tpuctl.ops.results import worker_run_id as worker_run_id
from tpuctl.ops.route import ssh_targets
from tpuctl.remote import script_command as script_command  # for callers that run a script
from tpuctl.workers.base import OnOutput, WorkerResult, Workers

T = TypeVar("T")

@dataclass
class SliceSession:
    ports: Ports
    slice: Slice
    pool: Workers
    # the worker list came from ops/worker_cache.py, not from the API just now
    from_cache: bool = False
    login: Login = field(default_factory=lambda: Login(""))
    _scripts_hash: str | None = field(default=None, init=False)
    # one install per session even when every worker's first script call races to it
    _install_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    # workers that could not be reached when the scripts were installed: tpuctl's scripts
    # are not run there, each call gets this failure back as that worker's result (as
    # `exec` reports an unreachable worker), so the other workers' results still count
    unreachable: dict[int, WorkerResult] = field(default_factory=dict, init=False)
    # the node's startup script was seen finished on every worker (ops/startup.py)
    startup_done: bool = field(default=False, init=False)

    @property
    def cloud(self) -> Cloud:
        return self.ports.cloud

    @property
    def indices(self) -> list[int]:
        return [w.index for w in self.slice.workers]

    async def run(self, command: str, *, indices: Sequence[int] | None = None,
                  timeout: float | None = None, stdin: bytes | None = None,
                  on_output: OnOutput | None = None, capture: bool = False
                  ) -> list[WorkerResult]:
        """Run on the workers; a worker unreachable through a cached list is retried once
        after the node is re-read from the API (safe: the command never started there)."""
        cached = self.from_cache
        results = await self.pool.run(command, indices=indices, timeout=timeout, stdin=stdin,
                                      on_output=on_output, capture=capture)
        # any transport failure (unreached, or lost after the command may have started)
        # sends a cached list back to the API: a preempted node must say so (exit 6); only
        # the unreached are re-run. A key refused while tpuctl's key change is settling is
        # the guest agent, not a stale list: waited for below, without the API.
        settling = keys_settling(self.login) > 0
        if cached and any(r.exit_code is None and not r.timed_out
                          and not (settling and is_publickey_denied(r)) for r in results):
            await self.refresh()
            unreached = [r.index for r in results if r.unreached]
            if unreached:
                again = await self.pool.run(command, indices=unreached, timeout=timeout,
                                            stdin=stdin, on_output=on_output, capture=capture)
                results = _merged(results, again)
        return await self._until_keys_apply(results, command, timeout=timeout, stdin=stdin,
                                            on_output=on_output, capture=capture)

    async def _until_keys_apply(self, results: list[WorkerResult], command: str, *,
                                timeout: float | None, stdin: bytes | None,
                                on_output: OnOutput | None, capture: bool
                                ) -> list[WorkerResult]:
        """Workers that refused our key ("Permission denied (publickey)") shortly after tpuctl
        changed the node's keys are retried until the guest agent has applied them, within
        the bound (access.KEY_WAIT_S), saying so once: the command never started there."""
        denied = [r.index for r in results if r.unreached and is_publickey_denied(r)]
        left = keys_settling(self.login)
        if not denied or left <= 0:
            return results
        self.ports.notice(
            f"{self.slice.name}: waiting up to {left:.0f}s for the workers' guest agent to "
            f"apply tpuctl's SSH key for {self.login.user!r} ({self.login.mode}; "
            f"{', '.join(f'w{i}' for i in denied)} refused it so far)")
        waits = backoff.delays(first=0.2, cap=1.0)
        while denied and keys_settling(self.login) > 0:
            await asyncio.sleep(min(next(waits), keys_settling(self.login)))
            again = await self.pool.run(command, indices=denied, timeout=timeout, stdin=stdin,
                                        on_output=on_output, capture=capture)
            results = _merged(results, again)
            denied = [r.index for r in again if r.unreached and is_publickey_denied(r)]
        return results

    async def refresh(self) -> None:
        """Replace a cached worker list by the API's: raises PreemptedError or NotFoundError
        when the node is gone, else re-pins the host keys and reconnects with the full
        retry policy. Only the first caller does it."""
        async with self._refresh_lock:
            if not self.from_cache:
                return
            self.ports.local.forget_slice(self.cloud, self.slice.name)
            self.from_cache = False
            # forgetting the entry must not forget a key change still settling
            access = await asyncio.to_thread(ensure_access, self.ports, self.slice.name,
                                             keys_changed_at=self.login.keys_changed_at)
            self.slice, self.login = access.slice, access.login
            self.pool.retarget(ssh_targets(self.slice, self.login.user, self.ports.route),
                               connect_timeout=CONNECT_TIMEOUT,
                               connect_attempts=CONNECT_ATTEMPTS)

    async def install_scripts(self) -> str:
        from tpuctl.remote import bundle, install_command

        h, data = bundle()
        if self._scripts_hash == h:
            return h
        async with self._install_lock:
            if self._scripts_hash != h:
                pending = self.indices
                results: dict[int, WorkerResult] = {}
                for attempt in range(TRANSPORT_ATTEMPTS):  # the installer is idempotent
                    if attempt:
                        await asyncio.sleep(_retry_wait(attempt))
                    got = await self.run(install_command(h), stdin=data, indices=pending,
                                         timeout=120)
                    results.update((r.index, r) for r in got)
                    pending = [r.index for r in got if _transport_failed(r)]
                    if not pending:
                        break
                self.unreachable.update(
                    (i, r) for i, r in results.items() if is_unreachable(r))
                raise_on_failure([r for i, r in sorted(results.items())
                                  if i not in self.unreachable],
                                 "installing tpuctl's worker scripts")
                self._scripts_hash = h
        return h

    async def script(self, name: str, *args: str, indices: Sequence[int] | None = None,
                     timeout: float | None = None, stdin: bytes | None = None,
                     on_output: OnOutput | None = None, capture: bool = False,
                     idempotent: bool = True) -> list[WorkerResult]:
        """Run remote/<name>.sh with the same arguments on every chosen worker."""
        chosen = list(indices) if indices is not None else self.indices
        return await self.script_each(name, {i: (args, stdin) for i in chosen},
                                      timeout=timeout, on_output=on_output, capture=capture,
                                      idempotent=idempotent, _same=True)

    async def script_each(self, name: str,
                          calls: Mapping[int, tuple[Sequence[str], bytes | None]],
                          *, timeout: float | None = None, on_output: OnOutput | None = None,
                          capture: bool = False, merge_stderr: bool = False,
                          idempotent: bool = True, _same: bool = False) -> list[WorkerResult]:
        """Run remote/<name>.sh with per-worker arguments and stdin, all in parallel.

        `idempotent` scripts are re-run, with backoff, on the workers whose transport failed
        (connection lost or refused: the script may or may not have run); a script's own
        non-zero exit and a timeout are never retried.

        The session's first call of one command without stdin is `guarded`: it runs where
        this version of the scripts is installed and installs them only where it is not (one
        round trip in the usual case instead of two); other first calls install first.
        """
        from tpuctl import remote

        h = remote.scripts_hash()
        tail = " 2>&1" if merge_stderr else ""
        results: dict[int, WorkerResult] = {
            i: self.unreachable[i] for i in calls if i in self.unreachable}
        pending = {i: c for i, c in calls.items() if i not in self.unreachable}
        run = _Calls(self, name, h, tail, results, timeout=timeout, on_output=on_output,
                     capture=capture, same=_same)
        first_attempt = 0
        if _same and pending and self._scripts_hash != h and \
                not next(iter(pending.values()))[1]:
            fresh, pending = await self._guarded(h, pending, run)
            if fresh:  # they lacked the scripts (installed now): nothing ran there yet
                await run(fresh)
                pending |= {i: c for i, c in fresh.items() if _transport_failed(results[i])}
            first_attempt = 1
        else:
            await self.install_scripts()
        for attempt in range(first_attempt, TRANSPORT_ATTEMPTS if idempotent else 1):
            if not pending:
                break
            if attempt:
                await asyncio.sleep(_retry_wait(attempt))
            await run(pending)
            pending = {i: c for i, c in pending.items() if _transport_failed(results[i])}
        return [results[i] for i in sorted(results)]

    async def install_on(self, indices: Sequence[int], *, timeout: float
                         ) -> tuple[str, list[WorkerResult]]:
        """Install the worker scripts on these workers only, once, within `timeout`: for
        `top`, which asks workers that stopped answering again every frame instead of leaving
        them out. Those that answer are no longer counted unreachable. (hash, results)"""
        from tpuctl.remote import bundle, install_command

        h, data = bundle()
        got = await self.run(install_command(h), stdin=data,
                             indices=list(indices), timeout=timeout)
        for r in got:
            if r.ok:
                self.unreachable.pop(r.index, None)
        return h, got

    async def _guarded(self, h: str, pending: dict[int, Call], run: _Calls
                       ) -> tuple[dict[int, Call], dict[int, Call]]:
        """The guarded first call (see `script_each`): (the workers that lacked the scripts,
        installed now, where the script is still to run; those whose transport failed)."""
        from tpuctl import remote

        got = await run(pending, guard=True)
        absent = {r.index for r in got if r.error is None and r.exit_code == remote.ABSENT}
        failed = {r.index for r in got if _transport_failed(r)}
        if absent or failed:
            # every worker, once (idempotent where present); marks the unreachable ones
            await self.install_scripts()
            for i in absent & set(self.unreachable):
                run.results[i] = self.unreachable[i]
        else:
            self.unreachable.update((r.index, r) for r in got if r.unreached)
            self._scripts_hash = h
        return ({i: c for i, c in pending.items() if i in absent and i not in self.unreachable},
                {i: c for i, c in pending.items() if i in failed})

    async def close(self) -> None:
        await self.pool.close()


Call = tuple[Sequence[str], bytes | None]  # a worker's script arguments and stdin


@dataclass
class _Calls:
    """One round of a `script_each`: run the calls, keep each worker's result."""

    session: SliceSession
    name: str
    h: str
    tail: str
    results: dict[int, WorkerResult]
    timeout: float | None
    on_output: OnOutput | None
    capture: bool
    same: bool

    async def __call__(self, calls: Mapping[int, Call], *, guard: bool = False
                       ) -> list[WorkerResult]:
        """`guard`: only where this version of the scripts is installed (remote.guarded);
        a worker without them (exit ABSENT) gets no result yet (`SliceSession._guarded`)."""
        from tpuctl import remote

        s = self.session
        if self.same:
            args, stdin = next(iter(calls.values()))
            command = remote.script_command(self.h, self.name, args) + self.tail
            got = await s.run(remote.guarded(self.h, command) if guard else command,
                              indices=sorted(calls), timeout=self.timeout, stdin=stdin,
                              on_output=self.on_output, capture=self.capture)
        else:
            groups = await gather_or_cancel([
                s.run(remote.script_command(self.h, self.name, args) + self.tail, indices=[i],
                      timeout=self.timeout, stdin=data, on_output=self.on_output,
                      capture=self.capture)
                for i, (args, data) in sorted(calls.items())
            ])
            got = [r for g in groups for r in g]
        if guard:
            from tpuctl.remote import ABSENT

            self.results.update((r.index, r) for r in got
                                if r.error is not None or r.exit_code != ABSENT)
        else:
            self.results.update((r.index, r) for r in got)
        return got


TRANSPORT_ATTEMPTS = 4
# How workers of a list just read from the API are connected to (from a cached list: one short
# attempt, worker_cache.CACHED_CONNECT_TIMEOUT).
CONNECT_TIMEOUT = 20.0
CONNECT_ATTEMPTS = 3


def _merged(results: Sequence[WorkerResult], again: Sequence[WorkerResult]
            ) -> list[WorkerResult]:
    merged = {r.index: r for r in results} | {r.index: r for r in again}
    return [merged[i] for i in sorted(merged)]


def is_publickey_denied(r: WorkerResult) -> bool:
    """The worker refused our key (workers/ssh.py says so in these words)."""
    from tpuctl.workers.base import PUBLICKEY_DENIED

    return r.error is not None and PUBLICKEY_DENIED in r.error


def _retry_wait(attempt: int) -> float:
    """Before re-running an idempotent script whose transport failed: 0.5, 1, 2, 4 s."""
    return backoff.delay(attempt, first=0.5, cap=4.0)


def _transport_failed(r: WorkerResult) -> bool:
    """Worth re-running an idempotent tpuctl script: the connection failed (nobody knows
    whether it ran), or something outside killed it with a signal. Never a timeout, never
    the script's own exit status, and never a worker that was not reached at all: the pool
    already tried to connect with its own retries and backoff (and a cached worker list was
    re-read from the API first), so trying again only delays naming it unreachable."""
    if r.timed_out or r.error is None or r.unreached:
        return False
    return r.exit_code is None or r.error.startswith("killed by signal")


def raise_on_failure(results: Sequence[WorkerResult], what: str,
                     tails: dict[int, str] | None = None) -> None:
    """One error naming every failed worker, its code or transport error, and a log tail."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    from tpuctl.remote import FRAME_ERROR

    parts = []
    for r in failed:
        why = r.error or f"exit {r.exit_code}"
        if r.error is None and r.exit_code == FRAME_ERROR:
            why = (f"exit {FRAME_ERROR}: its input arrived short or corrupted, so nothing "
                   "was replaced")
        tail = (tails or {}).get(r.index) or r.stdout.strip()
        if tail:
            why += ": " + " | ".join(tail.splitlines()[-5:])
        parts.append(f"w{r.index} {why}")
    code = next((r.exit_code for r in failed if r.exit_code), None) or int(ExitCode.FAILED)
    hint = "see the lines above; re-run the command after fixing"
    if all(is_unreachable(r) for r in failed):
        hint = ("those workers could not be reached: check the node (`tpuctl describe NAME`), "
                "then re-run")
    raise RemoteCommandError(f"{what} failed on {len(failed)}/{len(results)} worker(s): "
                             + "; ".join(parts), hint=hint, returncode=code)


def open_session(ports: Ports, name: str, *, max_concurrency: int = worker_cache.MAX_CONCURRENCY,
                 shared: bool = False, any_owner: bool = False) -> SliceSession:
    """A session on a READY node; its worker list from the cache when fresh.

    `shared`: a short command from a shell (exec, status, stop, runs) whose connections may
    be kept between commands (the wiring decides how: workers/mux.py when persistence is on).
    """
    access, cached = cached_access(ports, name, any_owner=any_owner)
    sl = access.slice
    from tpuctl.cloud.groups import note_session

    note_session(sl)  # a multislice group's lines are labelled [sSwW]
    pool = ports.connect(ssh_targets(sl, access.login.user, ports.route),
                         key_path=ports.local.key_path(),
                         pool=worker_cache.node_identity(ports.cloud, name), shared=shared,
                         connect_timeout=(worker_cache.CACHED_CONNECT_TIMEOUT if cached
                                          else CONNECT_TIMEOUT),
                         connect_attempts=(worker_cache.CACHED_CONNECT_ATTEMPTS if cached
                                           else CONNECT_ATTEMPTS),
                         max_concurrency=max_concurrency)
    return SliceSession(ports=ports, slice=sl, pool=pool, from_cache=cached,
                        login=access.login)


def on_slice(ports: Ports, name: str, fn: Callable[[SliceSession], Awaitable[T]], *,
             shared: bool = False, any_owner: bool = False) -> T:
    """Open one session (one connection per worker), run `fn(session)`, close it: the body
    of every command that works on a node's workers."""
    from tpuctl.naming import validate_node_name

    validate_node_name(name)

    async def main() -> T:
        session = open_session(ports, name, shared=shared, any_owner=any_owner)
        try:
            return await fn(session)
        finally:
            await session.close()

    return asyncio.run(main())
