"""The Workers port over asyncssh: one reused connection per worker, many workers at once.

Failure policy (FIELD_NOTES: "SSH exit 255 now and then", "--worker=all hangs"):
- only transport failures while connecting (refused, reset, connect timeout, connection lost,
  channel never opened) are retried, with jittered exponential backoff;
- a command that started is never retried; auth failures and host key mismatches are
  permanent and say so plainly;
- each worker has its own timeout and its own result; one stuck worker never holds the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from tpuctl.errors import ConfigError, UsageError
from tpuctl.workers.base import PUBLICKEY_DENIED, OnOutput, SshTarget, WorkerResult
from tpuctl.workers.jump import open_jump
from tpuctl.workers.lines import LineSplitter
from tpuctl.workers.openssh import KEEPALIVE_COUNT_MAX, KEEPALIVE_INTERVAL
from tpuctl.workers.sshfailures import (
    MaybeStartedError,
    NotStartedError,
    PermanentSshError,
    failure_result,
    is_transport_failure,
    one_line,
)
from tpuctl.workers.sshlib import asyncssh

Drain = Callable[[], Awaitable[None]]
_READ_CHUNK = 64 * 1024
# Algorithm preferences (the server picks the first of ours it supports). Key exchange keeps
# the post-quantum hybrid first (OpenSSH 10's default) with classical fallbacks for the
# OpenSSH 8.x/9.x sshd of TPU VM images. Ciphers prefer AES-GCM: one AEAD call per packet,
# where asyncssh's ChaCha20-Poly1305 makes several; with no GSSAPI attempt this saves about
# 15% of the CPU of a handshake on both ends (docs/performance.md).
_KEX_ALGS = ("mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
             "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
             "diffie-hellman-group16-sha512", "diffie-hellman-group14-sha256")
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
            "aes128-ctr", "aes256-ctr")


class SshWorkers:
    """Run commands on SSH targets in parallel (implements the `Workers` protocol)."""

    def __init__(
        self,
        targets: Sequence[SshTarget],
        *,
        key_path: Path,
        connect_timeout: float = 20.0,
        max_concurrency: int = 64,
        connect_attempts: int = 3,
    ) -> None:
        self._targets = {t.index: t for t in targets}
        if len(self._targets) != len(targets):
            raise UsageError("duplicate worker index in SSH targets")
        self._key_path = Path(key_path)
        self._connect_timeout = connect_timeout
        self._connect_attempts = max(1, connect_attempts)
        self._sem = asyncio.Semaphore(max_concurrency)
        self._conns: dict[int, asyncssh.SSHClientConnection] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # one connection per jump host, shared by every worker tunnelled through it
        self._jumps: dict[str, asyncssh.SSHClientConnection] = {}
        self._jump_lock = asyncio.Lock()
        self._client_key: asyncssh.SSHKey | None = None
        self.connections_opened = 0  # counts successful connects (reuse is observable)

    # -- connections ---------------------------------------------------------------------------
    def _key(self) -> asyncssh.SSHKey:
        if self._client_key is None:
            try:
                self._client_key = asyncssh.read_private_key(str(self._key_path))
            except (OSError, asyncssh.KeyImportError) as exc:
                raise ConfigError(
                    f"cannot read SSH key {self._key_path}: {one_line(exc)}",
                    hint="tpuctl makes its key on first use: move this file and its .pub "
                    "away and run the command again (the new key is added to the node)",
                ) from exc
        return self._client_key

    async def _connect_once(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        if target.host_key:
            try:
                pinned = asyncssh.import_public_key(target.host_key)
            except asyncssh.KeyImportError as exc:
                raise PermanentSshError(
                    f"worker {target.index}: malformed host key {target.host_key!r}"
                ) from exc
            # Trust exactly this key, for whatever address the worker has. Any other key
            # raises HostKeyNotVerifiable; nothing is ever accepted silently.
            known_hosts: object = ([pinned], [], [])
        else:
            known_hosts = None  # only when the API published no key: accept what is offered
        where = f"{target.username}@{target.host}:{target.port}"
        if target.jump:
            where += f" via {target.jump}"
        route: dict[str, object] = {}
        if target.jump:
            route["tunnel"] = await self._jump(target.jump)
        elif target.proxy_command:
            route["proxy_command"] = list(target.proxy_command)
        try:
            conn = await asyncssh.connect(
                target.host,
                target.port,
                **route,
                username=target.username,
                client_keys=[self._key()],
                known_hosts=known_hosts,
                agent_path=None,
                agent_forwarding=False,
                password=None,
                kbdint_auth=False,
                preferred_auth="publickey",
                connect_timeout=self._connect_timeout,
                keepalive_interval=KEEPALIVE_INTERVAL,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
                config=None,  # ~/.ssh/config must not redirect or re-key workers
                encoding=None,
                kex_algs=list(_KEX_ALGS),
                encryption_algs=list(_CIPHERS),
                compression_algs=None,  # commands and logs: latency matters, not bytes
                gss_host=None,  # public key only: no GSSAPI key exchange or auth
                x509_trusted_certs=None,  # nor X.509 certificates: skip probing ~/.ssh
                x509_trusted_cert_paths=None,
                # asyncssh sets TCP_NODELAY on every TCP connection itself (connection_made),
                # so small command/exit-status packets are not delayed by Nagle.
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise PermanentSshError(
                f"worker {target.index} ({where}): host key mismatch: the server did not present "
                f"the key the TPU API publishes for it (...{(target.host_key or '')[-12:]}); "
                "refusing to connect. A mismatch against a cached key list is re-checked "
                "against the API before you see this: if the node was just recreated, retry "
                f"in a minute; if it persists, treat it as an attack ({one_line(exc)})"
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise PermanentSshError(
                f"worker {target.index} ({where}): {PUBLICKEY_DENIED}: "
                f"{self._key_path} is not authorized for user {target.username!r}"
            ) from exc
        except asyncssh.DisconnectError as exc:
            if isinstance(exc, asyncssh.ConnectionLost):
                raise
            raise PermanentSshError(
                f"worker {target.index} ({where}): SSH failed: {one_line(exc)}"
            ) from exc
        self.connections_opened += 1
        return conn

    async def _jump(self, spec: str) -> asyncssh.SSHClientConnection:
        """The connection to a jump host, opened once and shared by every worker."""
        async with self._jump_lock:
            conn = self._jumps.get(spec)
            if conn is not None and not conn.is_closed():
                return conn
            conn = await open_jump(spec, connect_timeout=self._connect_timeout)
            self._jumps[spec] = conn
            return conn

    async def _connection(self, index: int) -> tuple[asyncssh.SSHClientConnection, bool]:
        """The cached connection of a worker, (re)connecting under the concurrency bound;
        and whether it was already open (kept from an earlier command)."""
        lock = self._locks.setdefault(index, asyncio.Lock())
        async with lock:
            conn = self._conns.get(index)
            if conn is not None and not conn.is_closed():
                return conn, True
            self._conns.pop(index, None)
            async with self._sem:
                conn = await self._connect_once(self._targets[index])
            self._conns[index] = conn
            return conn, False

    def _forget(self, index: int, conn: asyncssh.SSHClientConnection) -> None:
        if self._conns.get(index) is conn:
            del self._conns[index]
        conn.abort()

    async def _start(
        self, index: int, command: str
    ) -> asyncssh.SSHClientProcess[bytes]:
        """Connect (or reuse) and start the command; retries only pre-start transport errors."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._connect_attempts),
            # 0.2 s, 0.4 s, 0.8 s ... capped, plus up to 0.5 s of jitter so a slice's workers
            # don't retry in lockstep
            wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.5),
            retry=retry_if_exception(is_transport_failure),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                conn, kept = await self._connection(index)
                try:
                    if not kept:
                        return await conn.create_process(command, encoding=None)
                    # A kept connection to a VM that vanished (preempted, no RST) would hang
                    # until keepalives give up (a minute): bound it like a connect.
                    return await asyncio.wait_for(
                        conn.create_process(command, encoding=None), self._connect_timeout)
                except (asyncio.TimeoutError, TimeoutError) as exc:
                    self._forget(index, conn)
                    raise MaybeStartedError(
                        f"worker {index}: no answer within {self._connect_timeout:g}s on its "
                        "open connection (not retried: the command may have started)"
                    ) from exc
                except asyncssh.ChannelOpenError as exc:
                    if exc.code == asyncssh.OPEN_CONNECT_FAILED:
                        self._forget(index, conn)  # stale connection: reconnect and retry
                        raise
                    raise PermanentSshError(
                        f"worker {index}: session refused: {one_line(exc)}"
                    ) from exc
                except (OSError, asyncssh.Error) as exc:
                    # The channel was open and the exec request may have reached the server:
                    # the command may have started, so this is never retried.
                    self._forget(index, conn)
                    raise MaybeStartedError(
                        f"worker {index}: connection lost while starting the command "
                        f"(not retried: it may have started): {one_line(exc)}"
                    ) from exc
        raise AssertionError("unreachable")  # AsyncRetrying either returns or raises

    # -- running ---------------------------------------------------------------------------------
    async def _pump(
        self,
        reader: asyncssh.SSHReader[bytes],
        splitter: LineSplitter,
        sink: bytearray | None,
        drain: Drain | None,
    ) -> None:
        while True:
            data = await reader.read(_READ_CHUNK)
            if not data:
                break
            splitter.feed(data)
            if sink is not None:
                sink += data
            if drain is not None:
                # the consumer is behind: stop reading, so SSH flow control holds the worker
                await drain()
        splitter.flush()

    async def _run_one(
        self,
        index: int,
        command: str,
        stdin: bytes | None,
        on_output: OnOutput | None,
        capture: bool,
        captured: bytearray,
        drain: Drain | None,
    ) -> WorkerResult:
        try:
            proc = await self._start(index, command)
        except MaybeStartedError:
            raise
        except (PermanentSshError, OSError, asyncio.TimeoutError, TimeoutError,
                asyncssh.Error) as exc:
            raise NotStartedError(exc) from exc
        try:
            if stdin:
                proc.stdin.write(stdin)
            proc.stdin.write_eof()  # no stdin means EOF at once, like `ssh host cmd </dev/null`
            await asyncio.gather(
                self._pump(proc.stdout, LineSplitter(index, "stdout", on_output),
                           captured if capture else None, drain),
                self._pump(proc.stderr, LineSplitter(index, "stderr", on_output), None,
                           drain),
                proc.stdin.drain(),
            )
            await proc.wait_closed()
        finally:
            # On timeout/cancel this closes the channel; the server kills the process group.
            proc.close()
        status = proc.exit_status
        signal_info = proc.exit_signal
        if signal_info is not None:
            name = signal_info[0]
            rc = proc.returncode
            code = 128 - rc if rc is not None and rc < 0 else 255
            return WorkerResult(index, code, error=f"killed by signal {name}")
        if status is None:
            return WorkerResult(index, None, error="connection closed before the command exited")
        return WorkerResult(index, status)

    async def _run_guarded(
        self,
        index: int,
        command: str,
        timeout: float | None,
        stdin: bytes | None,
        on_output: OnOutput | None,
        capture: bool,
        drain: Drain | None,
    ) -> WorkerResult:
        """Never raises for one worker's trouble: it becomes that worker's result."""
        started = time.monotonic()
        captured = bytearray()
        task = asyncio.ensure_future(
            self._run_one(index, command, stdin, on_output, capture, captured, drain)
        )
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task  # finished, not just asked to: nothing outlives the fan-out
            raise
        if not done:
            # Cancelling closes the channel (see _run_one); the emulator/sshd then kills the
            # command's process group. Other workers' results are unaffected.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            result = WorkerResult(
                index, None, error=f"timed out after {timeout:g}s", timed_out=True
            )
        else:
            try:
                result = task.result()
            except NotStartedError as exc:
                result = failure_result(self._targets[index], exc.cause, unreached=True)
            except (PermanentSshError, OSError, asyncio.TimeoutError, TimeoutError,
                    asyncssh.Error) as exc:
                result = failure_result(self._targets[index], exc, unreached=False)
        return WorkerResult(
            index=result.index,
            exit_code=result.exit_code,
            error=result.error,
            timed_out=result.timed_out,
            duration=time.monotonic() - started,
            stdout=captured.decode("utf-8", errors="replace") if capture else "",
            unreached=result.unreached,
        )

    async def run(
        self,
        command: str | Mapping[int, str],
        *,
        indices: Sequence[int] | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        on_output: OnOutput | None = None,
        capture: bool = False,
        drain: Drain | None = None,
    ) -> list[WorkerResult]:
        """Run `command` (a bash string, quoted by the caller) on the selected workers, or
        with a mapping, each worker's own command on the workers it names (`indices` must
        then be None or the same workers). `drain`, awaited after each chunk of output, lets a
        slow consumer of `on_output` (the connection daemon's client) hold the workers back
        instead of buffering."""
        self._key()  # a missing local key is one clear error, not N per-worker ones
        if isinstance(command, str):
            selected = sorted(set(self._targets if indices is None else indices))
            commands = dict.fromkeys(selected, command)
        else:
            commands = dict(command)
            selected = sorted(commands)
            if indices is not None and sorted(set(indices)) != selected:
                raise UsageError("per-worker commands for other workers than those chosen")
        unknown = [i for i in selected if i not in self._targets]
        if unknown:
            raise UsageError(
                f"no such worker(s): {', '.join(map(str, unknown))}",
                hint=f"this slice has workers {', '.join(map(str, sorted(self._targets)))}",
            )
        return list(
            await asyncio.gather(
                *(
                    self._run_guarded(i, commands[i], timeout, stdin, on_output, capture,
                                      drain)
                    for i in selected
                )
            )
        )

    async def forward_local(self, index: int, local_port: int, dest_host: str, dest_port: int
                            ) -> asyncssh.SSHListener:
        """Listen on 127.0.0.1:local_port here and tunnel each connection, over worker
        `index`'s (reused) SSH connection, to dest_host:dest_port as that worker sees it."""
        conn, _ = await self._connection(index)
        listener: asyncssh.SSHListener = await conn.forward_local_port(
            "127.0.0.1", local_port, dest_host, dest_port)
        return listener

    def open_connections(self) -> int:
        return sum(1 for c in self._conns.values() if not c.is_closed())

    def retarget(self, targets: Sequence[SshTarget], *, connect_timeout: float,
                 connect_attempts: int) -> None:
        """Use a re-read worker list from now on; connections to workers whose address or
        host key changed are dropped, the others are kept."""
        new = {t.index: t for t in targets}
        for index, conn in list(self._conns.items()):
            if new.get(index) != self._targets.get(index):
                self._forget(index, conn)
        self._targets = new
        self._connect_timeout = connect_timeout
        self._connect_attempts = max(1, connect_attempts)

    async def close(self) -> None:
        conns = list(self._conns.values()) + list(self._jumps.values())
        self._conns.clear()
        self._jumps.clear()
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
