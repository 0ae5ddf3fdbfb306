"""The Workers port: what operations need from "the hosts of a slice", independent of SSH."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from tpuctl.workers.records import SshTarget, WorkerResult

# (worker index, stream name "stdout" | "stderr", one line without its trailing newline)
OnOutput = Callable[[int, str, str], None]
# in a WorkerResult's error: the worker refused our key (retried while keys settle)
PUBLICKEY_DENIED = "permission denied (publickey)"

__all__ = ["PUBLICKEY_DENIED", "Listener", "OnOutput", "SshTarget", "WorkerResult", "Workers"]


class Listener(Protocol):
    """A local listening socket that `Workers.forward_local` opened."""

    def get_port(self) -> int: ...
    def close(self) -> None: ...


class Workers(Protocol):
    """Run one command on many workers at once; one result per worker, in worker order."""

    async def run(
        self,
        command: str,
        *,
        indices: Sequence[int] | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        on_output: OnOutput | None = None,
        capture: bool = False,
    ) -> list[WorkerResult]: ...

    async def forward_local(self, index: int, local_port: int, dest_host: str,
                            dest_port: int) -> Listener:
        """Listen on 127.0.0.1:local_port (0: any free port) here and carry each connection
        over worker `index`'s connection to dest_host:dest_port as that worker sees it.
        OSError when the local port cannot be listened on."""
        ...

    def retarget(self, targets: Sequence[SshTarget], *, connect_timeout: float,
                 connect_attempts: int) -> None:
        """Use a re-read worker list from now on (connections to changed workers close)."""
        ...

    async def close(self) -> None: ...
