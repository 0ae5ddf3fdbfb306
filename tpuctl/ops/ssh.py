"""`ssh` and `ssh-config`: plain OpenSSH access to workers, with pinned host keys."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from tpuctl import validate
from tpuctl.errors import CloudError, UsageError
from tpuctl.model import Access, Slice
from tpuctl.naming import validate_node_name
from tpuctl.ops.access import cached_access, ensure_access, keys_settling
from tpuctl.ops.ports import Ports
from tpuctl.ops.route import ssh_targets
from tpuctl.workers.base import SshTarget


def ssh_argv(ports: Ports, name: str, worker: int, command: Sequence[str],
             slice_: int | None = None) -> list[str]:
    """The exact OpenSSH argv for an interactive shell (or one command) on one worker
    (`slice_`: of that slice of a multislice group, `worker` counted within it)."""
    validate_node_name(name)
    if worker < 0:
        raise UsageError(f"invalid --worker {worker}", hint="use a worker index such as 0")
    if slice_ is not None and slice_ < 0:
        raise UsageError(f"invalid --slice {slice_}", hint="use a slice index such as 0")
    ssh = shutil.which("ssh")
    if ssh is None:
        raise UsageError("the OpenSSH client (ssh) is not installed",
                         hint="install it, e.g. `apt-get install openssh-client`")
    access = ensure_access(ports, name)
    sl = access.slice
    if slice_ is not None:
        worker = _in_slice(sl, slice_, worker)
    if worker >= len(sl.workers):
        raise UsageError(f"worker {worker} does not exist: {name!r} has {len(sl.workers)} "
                         f"worker(s)", hint=f"use --worker 0..{len(sl.workers) - 1}")
    from tpuctl.workers.openssh import ssh_option_args

    local = ports.local
    target = ssh_targets(sl, access.login.user, ports.route, [worker])[0]
    when_keys_apply(ports, access, [target])
    argv = [ssh, *ssh_option_args(target, local.key_path(), local.known_hosts_path(sl))]
    if not command:
        argv.append("-t")  # a terminal for the interactive shell, even under `tpuctl` wrappers
    # options end here: the destination is data from the API, never read as an option (ssh
    # parses options again after the host otherwise). Then the command as OpenSSH takes it:
    # the remote shell runs its words joined by spaces, so `-- 'echo $X; exit 4'` is shell
    # source there, exactly as with plain `ssh` (`tpuctl exec` quotes every argument).
    argv += ["--", _checked(validate.ip_address, target.host), *command]
    return argv


def _in_slice(sl: Slice, slice_: int, worker: int) -> int:
    """The global index of worker `worker` of slice `slice_` (cloud/groups.py)."""
    from tpuctl.cloud.groups import global_index

    hosts = len(sl.workers) // max(1, sl.slices)
    if slice_ >= sl.slices:
        raise UsageError(f"slice {slice_} does not exist: {sl.name!r} has {sl.slices} "
                         "slice(s)", hint=f"use --slice 0..{sl.slices - 1}")
    if worker >= hosts:
        raise UsageError(f"worker {worker} does not exist in a slice of {hosts} worker(s)",
                         hint=f"use --worker 0..{hosts - 1}")
    return global_index(sl, slice_, worker)


def host_alias(sl: Slice, index: int) -> str:
    """`NAME-w3`, or `NAME-s1-w3` for slice 1's worker 3 of a multislice group."""
    from tpuctl.cloud.groups import worker_of

    if sl.slices <= 1:
        return f"{sl.name}-w{int(index)}"
    s, w = worker_of(sl, index)
    return f"{sl.name}-s{s}-w{w}"


def ssh_config_text(ports: Ports, name: str) -> str:
    """`Host NAME-wI` blocks for ~/.ssh/config, from the worker cache while it is fresh (as
    the fast path answers it), else from the API with the host keys pinned again."""
    import os

    validate_node_name(name)
    local = ports.local
    access, cached = cached_access(ports, name)
    if cached and not os.path.isfile(local.known_hosts_path(access.slice)):
        access = ensure_access(ports, name)  # its pinned keys are gone: pin them again
    sl = access.slice
    targets = ssh_targets(sl, access.login.user, ports.route)
    when_keys_apply(ports, access, targets)
    try:
        return render_ssh_config(sl, targets, local.key_path(), local.known_hosts_path(sl))
    except ValueError as e:
        raise CloudError(f"node {name!r}: {e}", hint="refusing to write it into an ssh "
                         "config; check that the endpoint is the TPU API") from None


def _checked(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except ValueError as e:
        raise CloudError(str(e), hint="refusing to hand it to ssh; check that the endpoint "
                         "is the TPU API") from None


def when_keys_apply(ports: Ports, access: Access, targets: Sequence[SshTarget]) -> None:
    """Before OpenSSH gets a target (it cannot retry a refused key itself): while a key
    tpuctl just changed is still being applied, log in once with asyncssh, retried as every
    session retries it (bounded, said once). Its failure is left for ssh to report."""
    if keys_settling(access.login) <= 0:
        return
    import asyncio

    from tpuctl.ops import worker_cache
    from tpuctl.ops.session import CONNECT_ATTEMPTS, CONNECT_TIMEOUT, SliceSession

    async def probe() -> None:
        pool = ports.connect(targets, key_path=ports.local.key_path(),
                             pool=worker_cache.node_identity(ports.cloud, access.slice.name),
                             shared=False, connect_timeout=CONNECT_TIMEOUT,
                             connect_attempts=CONNECT_ATTEMPTS, max_concurrency=64)
        session = SliceSession(ports, access.slice, pool, login=access.login)
        try:
            await session.run("true", indices=[t.index for t in targets], timeout=30)
        finally:
            await session.close()

    asyncio.run(probe())


def render_ssh_config(sl: Slice, targets: Sequence[SshTarget], key: Path,
                      known_hosts: Path) -> str:
    """The slice's blocks (ops/ssh_config.py, which the fast path draws them with)."""
    from tpuctl.ops import ssh_config
    from tpuctl.workers.openssh import proxy_command_line

    return ssh_config.render_ssh_config(
        name=sl.name, accelerator_type=sl.accelerator_type, project=sl.project, zone=sl.zone,
        workers=[(host_alias(sl, t.index), t.host, t.port, t.username, t.jump,
                  proxy_command_line(t.proxy_command) if t.proxy_command else None)
                 for t in targets],
        key=str(key), known_hosts=str(known_hosts))
