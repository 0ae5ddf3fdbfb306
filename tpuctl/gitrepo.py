"""The local git side of `sync`: which commit, is it pushed, is the tree dirty, bundles.

Runs the real `git` binary with argv lists (never a shell).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tpuctl.errors import UsageError


def git(repo: Path, *args: str, check: bool = True, strip: bool = True) -> str:
    try:
        p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                           timeout=300)
    except FileNotFoundError:
        raise UsageError("git is not installed", hint="install git (apt-get install git)"
                         ) from None
    if check and p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["failed"])[-1]
        raise UsageError(f"git {args[0]} failed in {repo}: {msg}",
                         hint="check the repository and the ref")
    return p.stdout.strip() if strip else p.stdout


@dataclass(frozen=True)
class RepoState:
    root: Path
    name: str
    sha: str
    dirty: tuple[str, ...]  # changes to tracked files: a sync of the commit leaves them out
    # files git does not track (a .env, fetched logs): never part of a commit, never synced
    untracked: tuple[str, ...] = ()


def inspect(path: Path | None = None, ref: str = "HEAD") -> RepoState:
    start = (path or Path.cwd()).resolve()
    p = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise UsageError(f"{start} is not inside a git repository",
                         hint="tpuctl moves code with git: `git init && git commit` first, "
                         "or run from your repository")
    root = Path(p.stdout.strip())
    try:
        sha = git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except UsageError:
        raise UsageError(f"unknown git ref {ref!r} in {root}",
                         hint="pass --ref with a branch, tag or commit that exists") from None
    # porcelain lines are "XY path": the leading status column may be a space, so no strip
    porcelain = git(root, "status", "--porcelain", "--untracked-files=normal", strip=False)
    lines = [line for line in porcelain.splitlines() if line.strip()]
    dirty = tuple(line[3:] for line in lines if not line.startswith("??"))
    untracked = tuple(line[3:] for line in lines if line.startswith("??"))
    return RepoState(root=root, name=root.name, sha=sha, dirty=dirty, untracked=untracked)


def origin_url(root: Path) -> str:
    url = git(root, "remote", "get-url", "origin", check=False)
    if not url:
        raise UsageError(f"the repository {root.name} has no 'origin' remote",
                         hint="add one and push, or use --via bundle to stream the code over SSH")
    return url


def is_pushed(root: Path, sha: str) -> bool:
    """True when a branch or tag of origin contains the commit (after a fetch)."""
    git(root, "fetch", "-q", "origin", check=False)
    contains = git(root, "for-each-ref", "--contains", sha, "--format=%(refname)",
                   "refs/remotes/origin", "refs/tags", check=False)
    return bool(contains.strip())


def make_bundle(root: Path, sha: str, base: str | None, out: Path) -> Path:
    """A bundle holding refs/tpuctl/sync = sha; incremental from `base` when given."""
    ref = "refs/tpuctl/sync"
    git(root, "update-ref", ref, sha)
    try:
        args = ["bundle", "create", "-q", str(out), ref]
        if base:
            args.append(f"^{base}")
        git(root, *args)
    finally:
        git(root, "update-ref", "-d", ref, check=False)
    return out


def has_commit(root: Path, sha: str) -> bool:
    return bool(git(root, "cat-file", "-t", sha, check=False) == "commit")


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    p = subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", older, newer],
                       capture_output=True)
    return p.returncode == 0
