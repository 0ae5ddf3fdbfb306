"""A recipe's `node:` block and `slices:`: the create flags' checks, named by field, and what
`up` creates from them (on the fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpuctl.errors import UsageError
from tpuctl.recipes.node import Mount, node_options
from tpuctl.recipes.schema import load_recipe

BASE = "accelerator: v6e-8\ncommand: [python, t.py]\n"


def _load(tmp_path: Path, extra: str):
    path = tmp_path / "r.yaml"
    path.write_text(BASE + extra)
    return load_recipe(path)[0]


@pytest.mark.parametrize(("extra", "named"), [
    ("node: {valid_until: 6hours}", "field 'node': invalid --valid-until '6hours'"),
    ("node: {spot: true, reserved: true}", "--spot cannot be combined"),
    ("node: {scopes: [storage]}", "unknown scope alias 'storage'"),
    ("node: {metadata: {ssh-keys: x}}", "ssh-keys is managed by tpuctl"),
    ("node: {metadata_from_file: {'bad key': f.sh}}", "invalid --metadata key 'bad key'"),
    ("node: {data_disks: [{source: d, mode: rw}]}", "node.data_disks.0.mode"),
    ("node: {data_disks: [{source: d, mount: relative/path}]}", "must be an absolute path"),
    ("node: {data_disks: [{source: d, mount: /mnt/../etc}]}", "must be an absolute path"),
    ("node: {colour: blue}", "unknown field 'node.colour'"),
    ("slices: 0", "field 'slices'"),
])
def test_a_bad_node_block_is_exit_2_naming_the_field(tmp_path, extra, named):
    with pytest.raises(UsageError, match=r"recipe .*") as e:
        _load(tmp_path, extra)
    assert named in e.value.message


def test_the_node_block_becomes_what_create_takes(tmp_path):
    (tmp_path / "boot.sh").write_text("echo hi\n")
    r = _load(tmp_path, "spot: true\nslices: 2\nnode:\n  valid_until: 2h\n"
              "  metadata_from_file: {startup-script: boot.sh}\n"
              "  data_disks:\n    - {source: d1, mode: read-only, mount: /mnt/disks/a}\n"
              "    - {source: d2, mode: read-only}\n")
    cap, vm, mounts = node_options(r.node, tmp_path, spot=r.spot)
    assert cap.spot and cap.needs_queue and cap.valid_until_s == 7200
    assert vm.metadata == {"startup-script": "echo hi\n"}
    assert [d.mode for d in vm.data_disks] == ["READ_ONLY", "READ_ONLY"]
    assert mounts == (Mount(1, "/mnt/disks/a", True),) and r.slices == 2


def test_a_missing_metadata_file_is_named_when_the_recipe_is_prepared(tmp_path):
    r = _load(tmp_path, "node: {metadata_from_file: {startup-script: nope.sh}}")
    with pytest.raises(UsageError, match="file 'nope.sh' not found"):
        node_options(r.node, tmp_path, spot=False)


def test_up_creates_with_the_node_block_waits_for_the_startup_script_and_mounts(
        tmp_path, monkeypatch):
    from tests.fakes import fake_ports
    from tests.unit.test_ops_up import Recorded, _git
    from tpuctl.ops.up import UpRequest, up_recipe

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "proj"
    root.mkdir()
    (root / "boot.sh").write_text("echo hi\n")
    (root / "r.yaml").write_text(
        "name: job\naccelerator: v6e-8\ncommand: [python, t.py]\nnode:\n  reservation: res-1\n"
        "  metadata_from_file: {startup-script: boot.sh}\n"
        "  data_disks: [{source: d1, mount: /mnt/disks/data}]\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "first")
    ports, cloud, fleet = fake_ports()
    events = Recorded()
    up_recipe(ports, UpRequest(root / "r.yaml"), events)
    assert cloud.changes()[0] == "create_queued_resource zone-a job"  # implied by reservation
    assert cloud.get_node("job").metadata["startup-script"] == "echo hi\n"
    assert events.outcomes[:3] == ["create done", "sync done", "startup-script done"]
    assert "disks done" in events.outcomes
    disk_calls = [c for c in fleet.script_calls if c[2] == "disk"]
    assert disk_calls == [("job", 0, "disk", ("1", "/mnt/disks/data", "rw"))]
