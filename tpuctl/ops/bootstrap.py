"""`bootstrap`: a venv per worker, built detached, polled, cached by a content-keyed marker.

Transient failures (network, index timeouts) are retried with backoff (tenacity); real ones
(unsatisfiable requirements) stop at once and show the log's tail.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from tpuctl.errors import ExitCode, RemoteCommandError, TimeoutExpired, UsageError
from tpuctl.ops.session import SliceSession, parse_kv, raise_on_failure
from tpuctl.remote import frame

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports

LOG = "$HOME/.tpuctl/logs/bootstrap.log"
# bootstrap.sh's exit when the requested Python is missing and `uv python install` failed
PYTHON_MISSING_EXIT = "41"

_PERMANENT = re.compile(
    r"No solution found|unsatisfiable|not found in the package registry|"
    r"No matching distribution|Requirement .* not satisfied|requires-python|"
    r"Because .* depends on|Distribution not found|invalid requirement|Failed to parse|"
    r"Couldn't parse requirement",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"timed out|timeout|Connection reset|Connection refused|connection closed|"
    r"Temporary failure in name resolution|Name or service not known|"
    r"HTTP status server error|(?<![\w.])(?:50[0234]|429) |Too Many Requests|Service Unavailable|"
    r"error sending request|Failed to fetch|Failed to download|network|broken pipe",
    re.IGNORECASE,
)


def classify_failure(log_tail: str) -> str:
    """'permanent' or 'transient'. A permanent marker wins; unknown failures are permanent
    (fail fast rather than retrying something that will fail again). bootstrap.sh's own step
    lines are not evidence either way: they carry the hash and paths, whose text could look
    like a status code ("hash=...f503 python=-") or a network word."""
    text = "\n".join(line for line in log_tail.splitlines()
                     if not line.startswith("[tpuctl-bootstrap]"))
    if _PERMANENT.search(text):
        return "permanent"
    if _TRANSIENT.search(text):
        return "transient"
    return "permanent"


def validate_python(version: str) -> str:
    """`--python`, checked here: a typo fails before any worker is touched (exit 2)."""
    from tpuctl.recipes.schema import check_python_version

    try:
        return check_python_version(version)
    except ValueError:
        raise UsageError(f"invalid --python {version[:20]!r}",
                         hint="give a version such as 3.11 (major.minor)") from None


def python_missing(python: str, index: int, log_tail: str) -> RemoteCommandError:
    """A missing interpreter fails at once, named as such: not retried, not blamed on the
    package index (uv's own error and its last cause say why the install failed)."""
    uv = [ln.strip() for ln in log_tail.splitlines() if ln.strip()
          and not ln.startswith("[tpuctl-bootstrap]")]
    errors = [ln for ln in uv if ln.startswith("error:")]
    why = " | ".join(dict.fromkeys(errors[:1] + uv[-1:])) or "no output from uv"
    return RemoteCommandError(
        f"Python {python} is not on w{index} and `uv python install {python}` failed: {why}",
        hint=f"use an image with Python {python}, let the workers reach uv's Python downloads "
        "(github.com), or set the recipe's `python:` to a version the image has (none: the "
        "image's python3); the emulator offers only this machine's interpreters "
        "(docs/emulator.md)", returncode=int(ExitCode.FAILED))


class TransientBootstrapFailure(Exception):
    pass


@dataclass(frozen=True)
class BootstrapSpec:
    requirements: bytes = b""
    python: str | None = None
    torch: str | None = None
    project_dir: str | None = None  # relative to $HOME, e.g. work/<repo>
    runtime: str = ""

    @property
    def hash(self) -> str:
        h = hashlib.sha256()
        for part in (self.requirements, (self.python or "system").encode(),
                     (self.torch or "-").encode(), (self.project_dir or "-").encode(),
                     self.runtime.encode()):
            h.update(hashlib.sha256(part).digest())
        return h.hexdigest()[:16]


@dataclass
class WorkerBootstrap:
    index: int
    state: str = "pending"  # pending, running, done, failed
    cached: bool = False
    attempts: int = 0
    seconds: float = 0.0
    last_line: str = ""


@dataclass
class BootstrapResult:
    hash: str
    workers: list[WorkerBootstrap] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def cached(self) -> bool:
        return all(w.cached for w in self.workers)

    def to_dict(self) -> dict[str, object]:
        return {"hash": self.hash, "cached": self.cached, "seconds": round(self.seconds, 2),
                "workers": [{"worker": w.index, "state": w.state, "cached": w.cached,
                             "attempts": w.attempts, "seconds": round(w.seconds, 2)}
                            for w in self.workers]}


async def _tail(session: SliceSession, index: int, lines: int = 20) -> str:
    res = await session.run(f"tail -n {lines} {LOG} 2>/dev/null || true", indices=[index],
                            capture=True, timeout=30)
    return res[0].stdout.strip()


async def bootstrap(
    session: SliceSession,
    spec: BootstrapSpec,
    *,
    timeout: float = 1800.0,
    attempts: int = 3,
    poll: float = 1.0,
    on_update: Callable[[WorkerBootstrap], None] | None = None,
) -> BootstrapResult:
    if attempts < 1:
        raise UsageError(f"invalid attempts {attempts}", hint="use 1 or more")
    private = [w.index for w in session.slice.workers if not w.external_ip]
    if private:
        session.ports.notice(
            f"{session.slice.name}: {len(private)} worker(s) have no external IP: they reach "
            "package indexes only through Cloud NAT on their subnet (or Private Google Access "
            "for Google's); without it, installs fail with connection errors")
    from tpuctl.ops.startup import wait_startup

    await wait_startup(session, timeout=timeout)  # the guest agent's startup script first
    t0 = time.monotonic()
    deadline = t0 + timeout
    h = spec.hash
    args = [h, spec.python or "-", spec.torch or "-", spec.project_dir or "-"]
    result = BootstrapResult(hash=h, workers=[WorkerBootstrap(i) for i in session.indices])
    by_index = {w.index: w for w in result.workers}

    def update(w: WorkerBootstrap) -> None:
        if on_update:
            on_update(w)

    async def once(w: WorkerBootstrap) -> None:
        w.attempts += 1
        started = await session.script("bootstrap", "start", *args, indices=[w.index],
                                       stdin=frame(spec.requirements), capture=True,
                                       timeout=120)
        raise_on_failure(started, "starting bootstrap")
        kv = parse_kv(started[0].stdout)
        if kv.get("state") == "done":
            w.state, w.cached = "done", kv.get("cached") == "1" and w.attempts == 1
            update(w)
            return
        w.state = "running"
        update(w)
        while True:
            if time.monotonic() > deadline:
                raise TimeoutExpired(
                    f"bootstrap did not finish on w{w.index} within {timeout:.0f}s",
                    hint=f"see {LOG} on the worker (`tpuctl exec NAME --worker {w.index} -- "
                    f"tail -n 50 .tpuctl/logs/bootstrap.log`)")
            await asyncio.sleep(poll)
            st = await session.script("bootstrap", "status", h, indices=[w.index],
                                      capture=True, timeout=60)
            raise_on_failure(st, "polling bootstrap")
            kv = parse_kv(st[0].stdout)
            state = kv.get("state", "none")
            tail = await _tail(session, w.index, 1)
            if tail != w.last_line:
                w.last_line = tail
                update(w)
            if state == "done":
                w.state = "done"
                update(w)
                return
            if state in ("failed", "none"):
                log_tail = await _tail(session, w.index, 20)
                if kv.get("exit") == PYTHON_MISSING_EXIT:
                    w.state, w.last_line = "failed", (log_tail.splitlines() or [""])[-1]
                    update(w)
                    raise python_missing(spec.python or "?", w.index, log_tail)
                kind = classify_failure(log_tail)
                w.last_line = (log_tail.splitlines() or [""])[-1]
                if kind == "transient":
                    update(w)
                    raise TransientBootstrapFailure(log_tail)
                w.state = "failed"
                update(w)
                raise RemoteCommandError(
                    f"bootstrap failed on w{w.index} (exit {kv.get('exit', '?')}): "
                    + " | ".join(log_tail.splitlines()[-8:]),
                    hint="fix what the log lines above name (often the requirements), then run "
                    f"bootstrap again; full log: {LOG.replace('$HOME', '~')} on w{w.index}",
                    returncode=int(ExitCode.FAILED))

    async def with_retries(w: WorkerBootstrap) -> None:
        t = time.monotonic()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientBootstrapFailure),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=1, min=1, max=20),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await once(w)
        except TransientBootstrapFailure as e:
            w.state = "failed"
            update(w)
            raise RemoteCommandError(
                f"bootstrap failed on w{w.index} after {w.attempts} attempts (transient "
                "errors): " + " | ".join(str(e).splitlines()[-5:]),
                hint="check the workers' network access to the package index, then re-run",
            ) from None
        finally:
            w.seconds = time.monotonic() - t

    tasks = [asyncio.ensure_future(with_retries(by_index[i])) for i in session.indices]
    try:
        done = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:
            t.cancel()
    result.seconds = time.monotonic() - t0
    errors = [e for e in done if isinstance(e, BaseException)]
    if errors:
        raise errors[0]
    return result


@dataclass(frozen=True)
class BootstrapRequest:
    name: str
    python: str | None = None
    requirements: Path | None = None  # a requirements file here, installed on every worker
    install_project: bool = False  # pip install -e the synced repository itself
    torch: str | None = None  # cpu: the CPU-only torch index
    recipe: Path | None = None  # a recipe's venv instead of the flags above
    timeout: float = 1800.0


def check(req: BootstrapRequest) -> tuple[Callable[[str], BootstrapSpec], float]:
    """Everything checkable here (a typo costs no worker time): the venv for a runtime, and
    the time the whole bootstrap may take."""
    from tpuctl.naming import validate_node_name

    validate_node_name(req.name)
    if req.torch not in (None, "cpu"):
        raise UsageError(f"invalid --torch {req.torch!r}", hint="only --torch cpu is supported")
    if req.python is not None:
        validate_python(req.python)
    if req.recipe is not None:
        from tpuctl.ops.prepared import prepare_file, venv_spec

        prepared = prepare_file(req.recipe, req.name)
        return (lambda runtime: venv_spec(prepared, runtime),
                prepared.recipe.timeouts.bootstrap)
    requirements = b""
    if req.requirements is not None:
        if not req.requirements.is_file():
            raise UsageError(f"requirements file {str(req.requirements)!r} not found",
                             hint="pass an existing file")
        requirements = req.requirements.read_bytes()
    project = None
    if req.install_project:
        from tpuctl import gitrepo

        project = f"work/{gitrepo.inspect().name}"
    return (lambda runtime: BootstrapSpec(requirements=requirements, python=req.python,
                                          torch=req.torch, project_dir=project,
                                          runtime=runtime), req.timeout)


def bootstrap_node(ports: Ports, req: BootstrapRequest,
                   on_update: Callable[[WorkerBootstrap], None] | None = None
                   ) -> BootstrapResult:
    """The `bootstrap` command: the venv for the node's runtime, on every worker."""
    from tpuctl.ops.session import on_slice

    make_spec, timeout = check(req)

    async def go(session: SliceSession) -> BootstrapResult:
        return await bootstrap(session, make_spec(session.slice.runtime_version),
                               timeout=timeout, on_update=on_update)

    return on_slice(ports, req.name, go)
