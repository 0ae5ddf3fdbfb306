"""What one worker is (how to reach it) and what happened there: plain records, light enough
for the fast path (tpuctl/cli/fast/), which imports no dataclasses."""

from __future__ import annotations

from tpuctl.record import record


@record
class SshTarget:
    """How to reach one worker (chosen by `tpuctl.ops.route.ssh_targets`). `host_key` pins
    the server key ("ssh-ed25519 AAAA..."); `jump` ("[USER@]HOST[:PORT]") is a jump host the
    connection is tunnelled through, reached as the user's own ssh reaches it;
    `proxy_command` an argv whose stdin/stdout carry the connection instead of TCP."""

    index: int
    host: str
    port: int
    username: str
    host_key: str | None = None
    jump: str | None = None
    proxy_command: tuple[str, ...] = ()


@record
class WorkerResult:
    """What happened on one worker. exit_code is None when the command never completed."""

    index: int
    exit_code: int | None
    error: str | None = None  # transport failure or timeout, in one line
    timed_out: bool = False
    duration: float = 0.0
    stdout: str = ""  # only filled when the caller asked to capture output
    # the command certainly never started (no connection, or the channel was refused):
    # running it again elsewhere, or after re-reading the node, cannot run it twice
    unreached: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None
