"""`sync`: every worker's checkout at one exact commit, by git (never scp)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tpuctl import gitrepo
from tpuctl.errors import UsageError
from tpuctl.ops.session import SliceSession, parse_kv, raise_on_failure

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports


@dataclass(frozen=True)
class SyncResult:
    repo: str
    sha: str
    via: str
    changed: tuple[int, ...]  # workers whose checkout moved
    left_out: tuple[str, ...]  # dirty paths not synced (with --allow-dirty)
    bundle_bytes: int = 0
    untracked: tuple[str, ...] = ()  # files git does not track: not in the commit, not synced

    @property
    def noop(self) -> bool:
        return not self.changed

    def to_dict(self) -> dict[str, object]:
        return {"repo": self.repo, "commit": self.sha, "via": self.via,
                "changed_workers": list(self.changed), "noop": self.noop,
                "left_out": list(self.left_out), "untracked": list(self.untracked),
                "bundle_bytes": self.bundle_bytes}


def plan(repo_path: Path | None, ref: str, via: str, allow_dirty: bool) -> gitrepo.RepoState:
    """Local checks before touching any worker. Changes to tracked files are refused (the
    commit would not be what you are looking at); untracked files are not part of any commit
    and are only named."""
    if via not in ("origin", "bundle"):
        raise UsageError(f"invalid --via {via!r}", hint="use --via origin or --via bundle")
    state = gitrepo.inspect(repo_path, ref)
    if state.dirty and not allow_dirty:
        shown = _some(state.dirty)
        raise UsageError(
            f"the working tree of {state.name} has uncommitted changes ({shown})",
            hint="commit them (workers get commits, not files), or pass --allow-dirty to sync "
            "the last commit without them",
        )
    if via == "origin":
        gitrepo.origin_url(state.root)
        if not gitrepo.is_pushed(state.root, state.sha):
            raise UsageError(
                f"commit {state.sha[:12]} is not pushed to origin",
                hint="`git push`, or use --via bundle to stream it over SSH",
            )
    return state


def _some(paths: tuple[str, ...], n: int = 5) -> str:
    return ", ".join(paths[:n]) + (f" and {len(paths) - n} more" if len(paths) > n else "")


def _parse_commits(results: list, sha: str) -> tuple[list[int], list[str]]:
    changed, wrong = [], []
    for r in results:
        fields = parse_kv(r.stdout)
        if fields.get("commit") != sha:
            wrong.append(f"w{r.index} at {fields.get('commit', '?')[:12]}")
        elif fields.get("changed") == "1":
            changed.append(r.index)
    return changed, wrong


async def sync(session: SliceSession, state: gitrepo.RepoState, via: str) -> SyncResult:
    sha = state.sha
    heads = await session.script("sync", "head", state.name, capture=True, timeout=60)
    raise_on_failure(heads, "reading workers' checkouts")
    current = {r.stdout.strip().removeprefix("commit=") for r in heads}
    bundle_bytes = 0
    if via == "origin":
        url = gitrepo.origin_url(state.root)
        results = await session.script("sync", "origin", state.name, sha, url, capture=True,
                                       timeout=600)
    else:
        base = None
        if len(current) == 1:
            (only,) = current
            if only not in ("none", sha) and gitrepo.has_commit(state.root, only) and \
                    gitrepo.is_ancestor(state.root, only, sha):
                base = only  # every worker has it: send only what is new
        with tempfile.TemporaryDirectory() as tmp:
            if current == {sha}:
                data = b""  # already there: sync.sh only confirms a clean checkout
            else:
                path = gitrepo.make_bundle(state.root, sha, base, Path(tmp) / "sync.bundle")
                data = path.read_bytes()
            bundle_bytes = len(data)
            results = await session.script("sync", "bundle", state.name, sha, stdin=data,
                                           capture=True, timeout=600)
    raise_on_failure(results, f"syncing {state.name} to {sha[:12]}")
    changed, wrong = _parse_commits(results, sha)
    if wrong:
        raise UsageError(f"workers did not reach {sha[:12]}: {', '.join(wrong)}",
                         hint="re-run `tpuctl sync`; check the workers' ~/work checkouts")
    return SyncResult(repo=state.name, sha=sha, via=via, changed=tuple(changed),
                      left_out=state.dirty, bundle_bytes=bundle_bytes,
                      untracked=state.untracked)


@dataclass(frozen=True)
class SyncRequest:
    name: str
    ref: str = "HEAD"
    via: str = "bundle"  # or origin: workers fetch from the remote
    allow_dirty: bool = False
    repo: Path | None = None  # default: the repository around the working directory


def sync_node(ports: Ports, req: SyncRequest) -> SyncResult:
    """The `sync` command: local checks first, then every worker at the commit."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.session import on_slice

    validate_node_name(req.name)
    state = plan(req.repo, req.ref, req.via, req.allow_dirty)
    return on_slice(ports, req.name, lambda s: sync(s, state, req.via))
