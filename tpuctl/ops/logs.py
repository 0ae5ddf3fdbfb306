"""`logs fetch`: copy a run's per-worker logs home, streamed line by line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tpuctl import validate
from tpuctl.errors import NotFoundError, UnreachableError, UsageError
from tpuctl.ops.outcome import fanout_exit_code
from tpuctl.ops.session import (
    SliceSession,
    is_unreachable,
    parse_kv,
    raise_on_failure,
    worker_run_id,
)
from tpuctl.paths import tpuctl_home

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports


def default_dest() -> Path:
    """~/.tpuctl/logs: outside any repository (a log written into the checkout would make
    the next `sync` see an untracked file), the same place `up` keeps its streamed logs."""
    return tpuctl_home() / "logs"


@dataclass(frozen=True)
class FetchResult:
    run_id: str
    directory: Path
    files: tuple[Path, ...]
    missing: tuple[int, ...]
    unreachable: tuple[int, ...] = ()

    @property
    def exit_code(self) -> int:
        """0, or 255 when a worker could not be reached (the others' logs are copied)."""
        return fanout_exit_code([], unreachable=bool(self.unreachable))

    def to_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "directory": str(self.directory),
                "files": [str(f) for f in self.files], "missing_workers": list(self.missing),
                "unreachable_workers": list(self.unreachable), "exit_code": self.exit_code}


async def fetch(session: SliceSession, run_id: str | None, dest: Path) -> FetchResult:
    """Each worker's log into dest/<node>/<run>/worker<i>.log (offset 0, no follow)."""
    heads = await session.script("status", run_id or "-", "0", capture=True, timeout=60)
    answered = [r for r in heads if not is_unreachable(r)]
    if not answered:
        raise UnreachableError(
            f"no worker of {session.slice.name} could be reached: "
            + "; ".join(f"w{r.index} {r.error}" for r in heads),
            hint=f"check the node (`tpuctl describe {session.slice.name}`), then re-run")
    first = answered[0]  # the run's id, from the first worker that answered
    raise_on_failure([first], "reading the run")
    kv = parse_kv(first.stdout)
    rid = worker_run_id(first.index, kv.get("run")) if run_id is None else run_id
    if rid in ("", "-") or kv.get("state") == "missing":
        raise NotFoundError(f"no run {run_id or '(latest)'} on {session.slice.name}",
                            hint="see `tpuctl status NAME`")
    try:  # node and run id are checked already; this also refuses a symlink leading out
        directory = validate.inside(dest, session.slice.name, rid)
    except ValueError as e:
        raise UsageError(f"--dest: {e}", hint="pick a --dest whose subdirectories are real "
                         "directories of yours") from None
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    handles: dict[int, IO[str]] = {
        i: os.fdopen(os.open(directory / f"worker{i}.log.part",  # job logs: 0600, as on workers
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                     encoding="utf-8")
        for i in session.indices}

    def on_output(index: int, stream: str, line: str) -> None:
        if stream == "stdout":
            handles[index].write(line + "\n")

    try:
        results = await session.script_each(
            "follow", {i: ([rid, str(i), "0", "0", ""], None) for i in session.indices},
            on_output=on_output, timeout=600, idempotent=False)
    finally:
        for h in handles.values():
            h.close()
    files, missing = [], []
    for r in results:
        part = directory / f"worker{r.index}.log.part"
        if r.ok:
            final = part.with_suffix("")
            part.replace(final)
            files.append(final)
        else:
            part.unlink(missing_ok=True)
            missing.append(r.index)
    unreachable = tuple(r.index for r in results if is_unreachable(r))
    return FetchResult(rid, directory, tuple(files), tuple(missing), unreachable)


@dataclass(frozen=True)
class FetchRequest:
    name: str
    run_id: str | None = None  # default: the latest
    dest: Path | None = None  # default: ~/.tpuctl/logs


def fetch_node(ports: Ports, req: FetchRequest) -> FetchResult:
    """The `logs fetch` command."""
    from tpuctl.ops.session import on_slice

    return on_slice(ports, req.name,
                    lambda s: fetch(s, req.run_id, req.dest or default_dest()))
