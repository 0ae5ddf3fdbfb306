"""tpuctl's local files are their user's only: ~/.tpuctl 0700 (tightened when an earlier
version left it 0755), the key 0600, and a key others can read is refused with the fix."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tpuctl.errors import ConfigError, ExitCode


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_the_key_and_every_directory_are_private(home: Path) -> None:
    from tpuctl import sshkeys

    path, pub = sshkeys.ensure_key()
    assert pub.startswith("ssh-ed25519 ")
    assert _mode(home / ".tpuctl") == _mode(path.parent) == 0o700
    assert _mode(path) == 0o600


def test_an_old_0755_home_is_tightened(home: Path) -> None:
    from tpuctl import sshkeys

    sshkeys.ensure_key()
    (home / ".tpuctl").chmod(0o755)
    (home / ".tpuctl" / "ssh").chmod(0o755)
    sshkeys.ensure_key()
    assert _mode(home / ".tpuctl") == _mode(home / ".tpuctl" / "ssh") == 0o700


def test_a_key_others_can_read_is_refused_with_the_fix(home: Path, monkeypatch, capsys) -> None:
    from tpuctl import sshkeys
    from tpuctl.cli.main import run

    path, _ = sshkeys.ensure_key()
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        sshkeys.ensure_key()
    assert info.value.exit_code == ExitCode.USAGE
    assert "readable by others (mode 644)" in info.value.message
    assert info.value.hint == f"`chmod 600 {path}`"
    # through the CLI: exit 2 before any connection (the endpoint is not even there)
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", "http://127.0.0.1:9")
    assert run(["exec", "some-node", "--", "true"]) == 2
    assert f"chmod 600 {path}" in capsys.readouterr().err
    path.chmod(0o600)
    sshkeys.ensure_key()  # fixed as the hint says: accepted


def test_a_private_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    import os

    from tpuctl.paths import private_dir

    if os.getuid() != 0:
        pytest.skip("needs root to make a directory of another user")
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, 65534, 65534)
    with pytest.raises(PermissionError, match="belongs to uid 65534"):
        private_dir(d)
