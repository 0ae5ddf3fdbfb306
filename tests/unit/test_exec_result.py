import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl.errors import UsageError
from tpuctl.model import Slice, Worker
from tpuctl.ops.remote_exec import ExecResult, build_command
from tpuctl.ops.ssh import render_ssh_config
from tpuctl.workers.base import WorkerResult


def R(i, code, error=None, timed_out=False):
    return WorkerResult(index=i, exit_code=code, error=error, timed_out=timed_out)


@pytest.mark.parametrize(
    "results,code",
    [
        ([R(0, 0), R(1, 0)], 0),
        ([R(0, 0), R(1, 3), R(2, 9)], 3),  # first non-zero in worker order
        ([R(0, None, "connection refused"), R(1, 4)], 4),
        ([R(0, None, "connection refused"), R(1, 0)], 255),
        ([R(0, None, "timed out after 1s", True), R(1, 0)], 5),
    ],
)
def test_exit_code_rule(results, code):
    assert ExecResult("n", tuple(results)).exit_code == code


@given(st.lists(st.text(), min_size=1, max_size=6))
def test_build_command_quotes_once_and_round_trips(argv):
    assert shlex.split(build_command(argv)) == argv


def test_build_command_needs_a_command():
    with pytest.raises(UsageError, match="no command"):
        build_command([])


def test_ssh_config_blocks(tmp_path):
    from tpuctl.ops.route import SshRoute, ssh_targets

    sl = Slice(name="job", project="p", zone="z", accelerator_type="v6e-16",
               runtime_version="r", state="READY",
               workers=(Worker(0, "10.0.0.2", 22, external_ip="34.0.0.2"),
                        Worker(1, "10.0.0.3", 22, external_ip="34.0.0.3")))
    targets = ssh_targets(sl, "alice", SshRoute())
    text = render_ssh_config(sl, targets, tmp_path / "key", tmp_path / "kh")
    assert "Host job-w0\n  HostName 34.0.0.2\n  Port 22\n  User alice" in text
    assert "Host job-w1" in text
    assert f'UserKnownHostsFile "{tmp_path / "kh"}"' in text
    assert "StrictHostKeyChecking yes" in text
    assert "Proxy" not in text
    jumped = render_ssh_config(sl, ssh_targets(sl, "al", SshRoute(proxy_jump="bob@b:2222")),
                               tmp_path / "key", tmp_path / "kh")
    assert "  HostName 10.0.0.3\n" in jumped and "  ProxyJump bob@b:2222\n" in jumped
    proxied = render_ssh_config(sl, ssh_targets(sl, "al", SshRoute(
        proxy_command="nc -X 5 -x {{proxy}}:1080 {host} {port} # 100%")),
        tmp_path / "key", tmp_path / "kh")
    assert "  ProxyCommand nc -X 5 -x '{proxy}:1080' 10.0.0.2 22 '#' 100%%\n" in proxied
