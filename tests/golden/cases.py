"""The golden `--dry-run` transcripts: which commands, and how each is run so that its
output depends only on tpuctl and the recipes (tests/golden/test_golden.py compares,
`python -m tests.golden.regen` rewrites).

Every case runs the real entry point in process with the API endpoint (and the Hugging Face
hub: a hub id is planned from tpuctl's built-in config) on a closed port (nothing may be
asked of them), a fresh HOME (no SSH key yet), LOGNAME=golden (the owner label and the
ssh-keys user), and, for recipes, a copy of `recipes/` committed at a fixed date in a
repository called `tpuctl` (so the commit, the checkout path and the venv hashes are the same
on every machine). Two values are replaced: `create --ttl`'s expiry time by `<expires>`, and
the commit of that copy by `<commit>` (it is the same everywhere, but it changes with any file
under recipes/, which would rewrite every transcript).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port

CREATE_CASES: dict[str, list[str]] = {
    "create": ["create", "golden", "--type", "v6e-16"],
    "create-spot": ["create", "golden", "--type", "v5litepod-16", "--spot"],
    "create-queued": ["create", "golden", "--type", "v5p-8", "--queued", "--spot"],
    "create-labels": ["create", "golden", "--type", "v4-8", "--label", "team=ml",
                      "--label", "cost-center=research"],
    "create-ttl": ["create", "golden", "--type", "v6e-8", "--ttl", "8h"],
    "create-internal-ips": ["create", "golden", "--type", "v6e-16", "--internal-ips",
                            "--network", "tpu-vpc", "--subnetwork", "tpu-subnet",
                            "--tags", "tpu-ssh,tpu-internal"],
    "create-zones": ["create", "golden", "--type", "v6e-16", "--zone", "us-east5-b,us-east1-d",
                     "--runtime", "v2-alpha-tpuv6e"],
    "create-reserved": ["create", "golden", "--type", "v6e-8", "--reserved",
                        "--service-account", "trainer@p.iam.gserviceaccount.com",
                        "--scopes", "storage-ro", "--metadata", "team=ml",
                        "--data-disk", "source=ckpt,mode=read-only"],
    "create-reservation": ["create", "golden", "--type", "v6e-16", "--reservation", "res-1",
                           "--valid-until", "6h", "--slices", "2"],
}


def recipes() -> list[Path]:
    return sorted((ROOT / "recipes").glob("*.yaml"))


def cases() -> dict[str, list[str]]:
    """Case name -> argv (a recipe's path relative to the repository copy)."""
    out = dict(CREATE_CASES)
    for r in recipes():
        out[f"up-{r.stem}"] = ["up", f"recipes/{r.name}", "--dry-run", "--run-id", "golden"]
    return {name: argv if "--dry-run" in argv else [*argv, "--dry-run"]
            for name, argv in out.items()}


def path(name: str) -> Path:
    return GOLDEN / f"{name}.txt"


def _git(repo: Path, *args: str) -> None:
    date = "2026-01-01T00:00:00+00:00"
    env = {**os.environ, "GIT_AUTHOR_NAME": "golden", "GIT_AUTHOR_EMAIL": "golden@example.com",
           "GIT_COMMITTER_NAME": "golden", "GIT_COMMITTER_EMAIL": "golden@example.com",
           "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(["git", "-C", str(repo), "-c", "init.defaultBranch=main",
                    "-c", "commit.gpgsign=false", *args],
                   check=True, capture_output=True, env=env)


def make_repo(base: Path) -> Path:
    """A repository named `tpuctl` holding today's recipes/ in one commit of a fixed date."""
    repo = base / "tpuctl"
    shutil.copytree(ROOT / "recipes", repo / "recipes")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "golden")
    return repo


@contextlib.contextmanager
def environment(base: Path, cwd: Path) -> Iterator[None]:
    """The process environment every case runs in (restored afterwards)."""
    saved, old_cwd = dict(os.environ), Path.cwd()
    for k in list(os.environ):
        if k.startswith(("TPUCTL_", "CLOUDSDK_", "GOOGLE_", "HF_")) or k == "CI":
            del os.environ[k]
    home = base / "home"
    home.mkdir(exist_ok=True)
    os.environ.update(TPUCTL_API_ENDPOINT=DEAD, HF_ENDPOINT=DEAD, HOME=str(home),
                      LOGNAME="golden", USER="golden", CLOUDSDK_CONFIG=str(base / "gcloud"),
                      COLUMNS="100", TPUCTL_PERSIST_CONNECTIONS="0")
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(saved)


def normalise(text: str, commit: str | None = None) -> str:
    text = re.sub(r'("tpuctl-expires": )"\d+"', r'\1"<expires>"', text)
    if commit:
        text = text.replace(commit, "<commit>").replace(commit[:12], "<commit>")
    return text


def transcript(name: str, base: Path) -> tuple[int, str, str]:
    """(exit code, normalised stdout, stderr) of one case, run in `base` (a fresh dir)."""
    from tpuctl.cli.main import run

    argv = cases()[name]
    repo, commit = base, None
    if argv[0] == "up":
        repo = make_repo(base)
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
    out, err = io.StringIO(), io.StringIO()
    with environment(base, repo), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = run(argv)
    return code, normalise(out.getvalue(), commit), err.getvalue()
