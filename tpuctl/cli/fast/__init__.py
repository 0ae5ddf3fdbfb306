"""The fast path: the commands people repeat (`exec`, `status`, `tail` without `--follow`,
`stop`, `ssh-config`), answered from the worker cache through a warm connection daemon
without typer, rich, pydantic, yaml or asyncio (docs/performance.md#the-fast-path).

`run(argv)` returns the exit code when it did the command, or None when the full CLI must
do it (help, anything it does not parse, a cold cache, no daemon, ...): then it has printed
nothing and run nothing. `TPUCTL_FAST_PATH=0` turns it off (the full CLI does everything).
"""

from __future__ import annotations

from tpuctl.cli.fast.args import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tpuctl.cli.fast.args import Args


def run(argv: Sequence[str]) -> int | None:
    args = parse(argv)
    if args is None:
        return None
    from tpuctl.cli.fast import daemon

    try:
        return _run(args, argv)
    except daemon.NoAck:
        from tpuctl.cli import plain
        from tpuctl.cli.fast import handoff
        from tpuctl.workers.muxproto import NO_ACK

        plain.info(NO_ACK)  # nothing ran: in process, as the full CLI does
        return handoff.resume(argv, [], bypass_daemon=True)


def _run(args: Args, argv: Sequence[str]) -> int | None:
    from tpuctl.cli.fast import commands

    if args.command == "exec":
        return commands.exec_(args, argv)
    if args.command == "status":
        return commands.status(args)
    if args.command == "tail":
        return commands.tail(args)
    if args.command == "stop":
        return commands.stop(args, argv)
    return commands.ssh_config(args)
