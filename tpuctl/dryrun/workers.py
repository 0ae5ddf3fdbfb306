"""The Workers port for `--dry-run`: every command is recorded (a tpuctl script by name and
arguments) and answered as a worker that has nothing of this node's yet and where every step
succeeds at once. Nothing connects to a worker.

What goes over stdin is described, not copied: secrets by their key names, a job's env by
its variable names, requirements and bundles by their size or kind."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tpuctl.dryrun.transcript import Transcript, WorkerCall
from tpuctl.errors import UsageError
from tpuctl.remote import FRAME_MAGIC, INSTALL_SCRIPTS, is_guarded, script_call
from tpuctl.workers.base import Listener, OnOutput, SshTarget, WorkerResult

Answer = tuple[str, list[str]]  # (stdout, stderr lines)


def _unframe(data: bytes) -> bytes:
    """The payload of a `remote.frame` (the data itself when it is not one)."""
    if data.startswith(FRAME_MAGIC):
        return data.split(b"\n", 1)[1] if b"\n" in data else b""
    return data


def _env_names(env_file: bytes) -> list[str]:
    """The variables of `export K='v'` lines (secrets.render_env), never their values."""
    names = []
    for line in env_file.decode("utf-8", "replace").splitlines():
        if line.startswith("export ") and "=" in line:
            names.append(line[len("export "):].split("=", 1)[0])
    return names


def describe_stdin(script: str | None, args: Sequence[str], data: bytes | None
                   ) -> tuple[str, ...]:
    if not data:
        return ()
    payload = _unframe(data)
    sub = args[0] if args else ""
    if script == INSTALL_SCRIPTS:
        return ()  # the line says what it is
    if script == "secrets":
        return (f"secrets: {' '.join(_env_names(payload)) or '(none)'} (values not shown)",)
    if script == "launch":
        command, _, env = payload.partition(b"\0")
        return (f"command: {command.decode('utf-8', 'replace')}",
                f"env: {' '.join(sorted(_env_names(env)))} (values not shown)")
    if script == "bootstrap" and sub == "start":
        lines = [ln for ln in payload.decode("utf-8", "replace").splitlines() if ln.strip()]
        return (f"requirements: {len(lines)} line(s), {len(payload)} bytes",)
    if script == "sync":
        return ("a git bundle of the commit",)
    return (f"{len(payload)} bytes",)


def _kv(**fields: str) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


# script -> answer from (worker index, arguments): what a fresh worker prints when the step
# succeeds (the remote scripts' own output protocol)
ANSWERS: dict[str, Callable[[int, list[str]], Answer]] = {
    "sync": lambda i, a: (_kv(commit="none") if a[0] == "head"
                          else _kv(commit=a[2], changed="1"), []),
    "bootstrap": lambda i, a: (_kv(state="done", cached="0", exit="0"), []),
    "status": lambda i, a: (_kv(run=a[0], state="running", heartbeat_age="0", pid="-",
                                log_lines="0"), []),
    "probe": lambda i, a: (_kv(log="1", http="200"), []),
    "follow": lambda i, a: ("", [_kv(**{"tpuctl-run": a[0], "exit_code": "0",
                                        "alive": "0"})]),
    "stop": lambda i, a: (_kv(run=a[0], result="not-running", exit_code="-"), []),
}


class RecordingWorkers:
    def __init__(self, targets: Sequence[SshTarget], transcript: Transcript) -> None:
        self._indices = sorted(t.index for t in targets)
        self._t = transcript

    async def run(self, command: str, *, indices: Sequence[int] | None = None,
                  timeout: float | None = None, stdin: bytes | None = None,
                  on_output: OnOutput | None = None, capture: bool = False
                  ) -> list[WorkerResult]:
        chosen = tuple(sorted(self._indices if indices is None else indices))
        call = script_call(command)
        script, args = call if call is not None else (None, [command])
        if is_guarded(command):  # run where installed: here, a fresh worker, install first
            self._t.add(WorkerCall(chosen, INSTALL_SCRIPTS, (), ()))
        self._t.add(WorkerCall(chosen, script, tuple(args),
                               describe_stdin(script, args, stdin)))
        results = []
        for i in chosen:
            answer = ANSWERS.get(script or "")
            out, err = answer(i, args) if answer is not None else ("", [])
            if on_output is not None:
                for line in out.splitlines():
                    on_output(i, "stdout", line)
                for line in err:
                    on_output(i, "stderr", line)
            results.append(WorkerResult(i, 0, stdout=out + "\n" if capture and out else ""))
        return results

    async def forward_local(self, index: int, local_port: int, dest_host: str,
                            dest_port: int) -> Listener:
        raise UsageError("a dry run opens no tunnel", hint="run it without --dry-run")

    def retarget(self, targets: Sequence[SshTarget], *, connect_timeout: float,
                 connect_attempts: int) -> None:
        self._indices = sorted(t.index for t in targets)

    async def close(self) -> None:
        return None
