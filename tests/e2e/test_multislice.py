"""`tpuctl up recipes/quickstart-multislice.yaml` on the emulator, from a copy of this
repository: 2 x v6e-16 as one multislice group, the quickstart program as 8 JAX processes over
32 CPU devices with the loss falling; slice 1 preempted mid-run makes the group preempted and
`--on-preempt recreate` recreates the whole group and finishes the run. One run, the whole
path: the group's names, ssh-config hosts and [sSwW] labels are checked on the way."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import Cli, Emulator, UpInBackground
from tests.e2e.test_docs import _copy_of_this_repository

pytestmark = pytest.mark.e2e
NAME = "quickstart-multislice"
PARENT = "projects/local-project/locations/local-a"


def test_multislice_quickstart_trains_on_8_processes_and_survives_a_preempted_slice(
        cli: Cli, emulator: Emulator, tmp_path: Path):
    repo = _copy_of_this_repository(tmp_path / "repo")
    up = UpInBackground(cli, "recipes/quickstart-multislice.yaml", repo, marker="step=1 ")
    try:
        assert up.seen.wait(600), "the job never logged its first step"
        emulator.admin("POST", f"{PARENT}/nodes/{NAME}-1:preempt")
        out, err = up.finish(timeout=900)
        assert up.proc.returncode == 0, err[-3000:]
        assert "PREEMPTED" in err or "preempted" in err
        assert re.search(r"recreate", err), err[-2000:]
        last = out[out.rindex("processes="):]  # the recreated group's run
        assert "processes=8 devices=32 local_devices=4" in last
        assert "mesh slice=2 data=16" in last
        losses = [float(x) for x in re.findall(r"step=\d+ loss=([0-9.]+)", last)]
        assert len(losses) >= 4 and losses[-1] < losses[0] / 2, losses
        assert re.search(r"^\[s0w0\] ", out, re.M)  # rank 0 is slice 0, worker 0
        ex = cli("exec", NAME, "--", "bash", "-c", "echo $HOME")  # NAME: all 8 workers
        assert ex.returncode == 0, ex.stderr
        labels = sorted(ln.split()[0] for ln in ex.stdout.splitlines())
        assert labels == [f"[s{s}w{w}]" for s in (0, 1) for w in range(4)]
        assert len({ln.split()[1] for ln in ex.stdout.splitlines()}) == 8  # 8 distinct workers
        one = cli("exec", NAME, "--worker", "s1w0", "--", "hostname")  # selected as labelled
        assert one.returncode == 0, one.stderr
        assert [ln.split()[0] for ln in one.stdout.splitlines()] == ["[s1w0]"], one.stdout
        st = cli("status", NAME)
        assert st.returncode == 0, st.stderr  # the recreated run exited 0 everywhere
        cfg = cli("ssh-config", NAME)
        assert cfg.returncode == 0, cfg.stderr
        assert f"Host {NAME}-s1-w3" in cfg.stdout
        # doctor, top and gc take NAME as the whole group too
        doc = cli("doctor", NAME, "--json")
        report = json.loads(doc.stdout)
        assert doc.returncode == 0 and report["healthy"], (doc.stderr, report["problems"])
        assert [w["worker"] for w in report["workers"]] == list(range(8))
        top = cli("top", NAME, "--once", "--json")
        assert top.returncode == 0, top.stderr
        frame = json.loads(top.stdout.splitlines()[-1])
        assert len(frame["workers"]) == 8 and not frame["unreachable_workers"], frame
        gc = cli("gc", "--json")  # nothing to collect: a healthy group is left alone
        assert gc.returncode == 0, gc.stderr
        assert cli("describe", NAME).returncode == 0
        listed = json.loads(cli("list", "--json").stdout)  # its slices, named by the group
        assert {n["name"]: n["group"] for n in listed if n["name"].startswith(f"{NAME}-")} == {
            f"{NAME}-0": NAME, f"{NAME}-1": NAME}
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
        cli("down", NAME, "--yes", timeout=300)
