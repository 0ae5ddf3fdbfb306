"""What a `--dry-run` would have sent, in order: API requests that change something and the
worker scripts (or commands) with their arguments. Inputs sent over stdin are described,
never copied: secrets are named by key only."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ApiCall:
    method: str  # POST, PATCH, DELETE
    path: str  # /v2/projects/P/locations/Z/...?query
    body: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, object]:
        return {"api": {"method": self.method, "path": self.path, "body": self.body}}


INSTALL = "install"  # the script name of tpuctl's scripts' installer (ops/session.py)


@dataclass(frozen=True)
class WorkerCall:
    workers: tuple[int, ...]
    script: str | None  # remote/<script>.sh (or INSTALL), or None for a plain command
    args: tuple[str, ...]  # the script's arguments (a plain command: the command, alone)
    stdin: tuple[str, ...] = ()  # what stdin carries, described line by line

    @property
    def where(self) -> str:
        """w0-3 for a contiguous range, else w0,2,5."""
        w = self.workers
        if len(w) > 1 and list(w) == list(range(w[0], w[-1] + 1)):
            return f"w{w[0]}-{w[-1]}"
        return "w" + ",".join(str(i) for i in w)

    @property
    def line(self) -> str:
        if self.script is None:
            return self.args[0]
        if self.script == INSTALL:
            return "install tpuctl's worker scripts (~/.tpuctl/bin/<content hash>/)"
        return f"{self.script}.sh {shlex.join(self.args)}".rstrip()

    def to_dict(self) -> dict[str, object]:
        what: dict[str, object] = (
            {"command": self.args[0]} if self.script is None
            else {"script": self.script if self.script == INSTALL else f"{self.script}.sh",
                  "args": list(self.args)})
        return {**what, "workers": list(self.workers), "stdin": list(self.stdin)}

    def joins(self, other: WorkerCall) -> bool:
        """The same call on other workers (a per-worker fan-out of identical calls)."""
        return (self.script, self.args, self.stdin) == (other.script, other.args, other.stdin) \
            and not set(self.workers) & set(other.workers)


@dataclass
class Transcript:
    steps: list[ApiCall | WorkerCall] = field(default_factory=list)
    reads_api: bool = True  # False: not even reads were sent (create and up)

    def add(self, step: ApiCall | WorkerCall) -> None:
        """Append; identical worker calls in a row become one call on their workers."""
        last = self.steps[-1] if self.steps else None
        if isinstance(step, WorkerCall) and isinstance(last, WorkerCall) and last.joins(step):
            self.steps[-1] = WorkerCall(tuple(sorted({*last.workers, *step.workers})),
                                        step.script, step.args, step.stdin)
            return
        self.steps.append(step)

    @property
    def api_calls(self) -> int:
        return sum(isinstance(s, ApiCall) for s in self.steps)

    @property
    def worker_calls(self) -> int:
        return sum(isinstance(s, WorkerCall) for s in self.steps)

    def to_list(self) -> list[dict[str, object]]:
        return [s.to_dict() for s in self.steps]
