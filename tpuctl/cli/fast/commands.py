"""The fast path's commands: each sends the request the full CLI's first step would send
(the same command string, workers, timeout and connection policy, from the same functions),
and draws the answer with the full CLI's text (cli/plain.py, ops/results.py) when it is the
plain case. Otherwise:
- nothing has run, or only read-only scripts ran and nothing was printed (status, tail):
  return None, and the full CLI does the whole command;
- a command ran (exec, stop) and its answer needs what only the full CLI does (re-read the
  node after a lost worker, install the worker scripts, raise an error): `handoff.resume`
  runs the full CLI, whose first step is answered with what the daemon already said.
"""

from __future__ import annotations

from tpuctl import remote, shquote
from tpuctl.cli import plain
from tpuctl.cli.fast import daemon
from tpuctl.cli.fast import node as nodes
from tpuctl.errors import TpuctlError
from tpuctl.ops import worker_cache
from tpuctl.ops.results import (
    ExecResult,
    RunStatus,
    parse_kv,
    parse_status_line,
    stop_result,
    worker_run_id,
)
from tpuctl.validate import is_run_id
from tpuctl.workers import muxproto
from tpuctl.workers.select import parse_worker_selection

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tpuctl.cli.fast.args import Args
    from tpuctl.cli.fast.node import Node
    from tpuctl.workers.records import WorkerResult


def _request(node: Node, command: str | Mapping[int, str], indices: Sequence[int] | None, *,
             timeout: float | None, stream: bool, capture: bool) -> dict[str, object]:
    """The request `MuxWorkers.request` makes for a session on a cached worker list
    (ops/session.py:open_session, workers/mux.py)."""
    return muxproto.run_request(
        pool=node.identity, key_path=node.key_path, targets=node.targets,
        connect_timeout=worker_cache.CACHED_CONNECT_TIMEOUT,
        connect_attempts=worker_cache.CACHED_CONNECT_ATTEMPTS,
        max_concurrency=worker_cache.MAX_CONCURRENCY, persist=node.persist, command=command,
        indices=indices, timeout=timeout, stdin_b64=None, stream=stream, capture=capture)


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_NAME_CHARS = _LOWER + "0123456789-"


def _node_name(name: str) -> bool:
    """naming.validate_node_name's rule without `re` (its import is ~4 ms here); stricter
    where the regex's `$` takes a trailing newline: the full CLI then decides."""
    return 0 < len(name) <= 63 and name[0] in _LOWER and name[-1] != "-" and \
        not name.strip(_NAME_CHARS)


def _run_id(run: str) -> bool:
    """validate.is_run_id, stricter as `_node_name` is: no trailing newline."""
    return not run.endswith("\n") and is_run_id(run)


def _valid(args: Args) -> bool:
    """What every command checks before any API call (the full CLI names the problem)."""
    if not _node_name(args.name) or (args.run is not None and not _run_id(args.run)):
        return False
    try:
        parse_worker_selection(args.worker, None)
    except TpuctlError:
        return False
    return True


def _target(args: Args, *, selected: bool) -> tuple[Node, list[int]] | None:
    """The cached node and the workers to reach (all, or `--worker`'s when `selected`);
    None whenever the full CLI must decide (bad input, no fresh cache, a bad selection)."""
    if not _valid(args):
        return None
    node = nodes.find(args)
    if node is None:
        return None
    if not selected:
        return node, [int(w["index"]) for w in node.workers]
    try:  # one slice: node.find leaves a multislice group to the full CLI
        return node, parse_worker_selection(args.worker, len(node.workers), slices=1)
    except TpuctlError:
        return None


def _clean(results: Sequence[WorkerResult]) -> bool:
    return all(r.ok for r in results)


def exec_(args: Args, argv: Sequence[str]) -> int | None:
    if args.timeout is not None and args.timeout <= 0:
        return None
    target = _target(args, selected=True)
    if target is None:
        return None
    node, indices = target
    command = shquote.join(args.argv)  # ops/remote_exec.py:build_command (shlex.join)
    req = _request(node, command, indices, timeout=args.timeout, stream=True, capture=False)
    reply = daemon.call(req, indices, plain.line_printer(args.json))
    if reply is None:
        return None
    if reply.error is not None or \
            any(r.exit_code is None and not r.timed_out for r in reply.results):
        # a transport failure from a cached list: the session re-reads the node (API)
        from tpuctl.cli.fast import handoff

        return handoff.resume(argv, [handoff.answer(command, indices, args.timeout, False,
                                                    reply)])
    result = ExecResult(node=args.name, results=reply.results)
    if args.json:
        plain.print_json(result.to_dict())
    else:
        plain.info(plain.exec_summary(result.results))
    return result.exit_code


def _scripts(node: Node, name: str, args_of: Callable[[int], Sequence[str]],
             indices: Sequence[int], *, timeout: float | None, stream: bool, capture: bool,
             on_output: Callable[[int, str, str], None] | None = None
             ) -> tuple[str | dict[int, str], daemon.Reply | None]:
    """A worker script, run only where this version of the scripts is installed (the
    session's first script call: ops/session.py); one command, or one per worker."""
    h = remote.scripts_hash()
    per_worker = {i: remote.guarded_call(h, name, args_of(i)) for i in indices}
    same = len(set(per_worker.values())) == 1
    command: str | dict[int, str] = next(iter(per_worker.values())) if same else per_worker
    req = _request(node, command, indices if same else None, timeout=timeout, stream=stream,
                   capture=capture)
    return command, daemon.call(req, indices, on_output)


def status(args: Args) -> int | None:
    target = _target(args, selected=False)
    if target is None:
        return None
    node, indices = target
    _, reply = _scripts(node, "status", lambda i: [args.run or "-", str(i)], indices,
                        timeout=60, stream=False, capture=True)
    if reply is None or reply.error is not None or not _clean(reply.results):
        return None  # read-only so far, nothing printed: the full CLI does it all
    try:
        workers = tuple(parse_status_line(r.index, r.stdout.strip()) for r in reply.results)
    except TpuctlError:
        return None
    health = None
    url = workers[0].serve_url if workers else None
    if url is not None and workers[0].state == "running":
        _, probe = _scripts(node, "probe", lambda i: [workers[0].run_id, "0", "-",
                                                      f"{url}/health_generate", "10"],
                            [0], timeout=70, stream=False, capture=True)
        if probe is None or probe.error is not None or not _clean(probe.results):
            return None
        health = parse_kv(probe.results[0].stdout).get("http", "000")
    st = RunStatus(node=args.name, node_state=node.entry["slice"]["state"], workers=workers,
                   health_code=health)
    ended = [w.ended_at for w in workers if w.ended_at is not None]
    if st.finished and ended and not st.unreachable and len(st.run_id.split(",")) == 1:
        return None  # the full CLI also records the run's end in the cost ledger (run_status)
    if args.json:
        plain.print_json(st.to_dict())
    else:
        for line in plain.status_header_lines(st):
            plain.out(line)
        _table(plain.STATUS_HEADERS, plain.status_rows(st))
    plain.unreachable(plain.status_unreachable(st))
    return st.exit_code


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """As `output.table` draws it: with rich on a terminal (as the full CLI), else plain."""
    import sys

    if sys.stdout.isatty():
        from tpuctl.cli import output

        output.table(headers, rows)
        return
    for line in plain.table_lines(headers, rows):
        plain.out(line)


def tail(args: Args) -> int | None:
    target = _target(args, selected=True)
    if target is None:
        return None
    node, indices = target
    lines: list[tuple[int, str]] = []
    meta: dict[int, dict[str, str]] = {}

    def keep(index: int, stream: str, line: str) -> None:
        if stream == "stdout":
            lines.append((index, line))
        elif line.startswith("tpuctl-"):
            meta.setdefault(index, {}).update(parse_kv(line))

    # follow.sh RUN WORKER OFFSET FOLLOW LINES, as ops/runs.py:tail's first call per worker
    _, reply = _scripts(node, "follow", lambda i: [args.run or "-", str(i), "0", "0",
                                                   str(args.lines)],
                        indices, timeout=None, stream=True, capture=False, on_output=keep)
    if reply is None or reply.error is not None or not _clean(reply.results):
        return None  # nothing printed yet: the full CLI tails (or names the problem)
    try:
        for i in indices:  # what ops/runs.py:tail checks of each worker's end marker
            worker_run_id(i, meta.get(i, {}).get("tpuctl-run", "-"))
    except TpuctlError:
        return None
    printer = plain.line_printer(False)
    for index, line in lines:
        printer(index, "stdout", line)
    return 0


def stop(args: Args, argv: Sequence[str]) -> int | None:
    target = _target(args, selected=False)
    if target is None:
        return None
    node, indices = target
    grace = args.grace
    command, reply = _scripts(node, "stop", lambda i: [args.run or "-", str(int(grace))],
                              indices, timeout=grace + 60, stream=False, capture=True)
    if reply is None:
        return None
    from tpuctl.cli.fast import handoff

    if reply.error is not None or not _clean(reply.results):
        return handoff.resume(argv, [handoff.answer(command, indices, grace + 60, True,
                                                    reply)])
    try:
        result = stop_result(args.name, args.run, reply.results)
    except TpuctlError:
        return handoff.resume(argv, [handoff.answer(command, indices, grace + 60, True,
                                                    reply)])
    if any(w.result in ("terminated", "killed") for w in result.workers):
        # it stopped a run: the full CLI records its end in the cost ledger (ops/launch.py)
        return handoff.resume(argv, [handoff.answer(command, indices, grace + 60, True,
                                                    reply)])
    if args.json:
        plain.print_json(result.to_dict())
    else:
        for line in plain.stop_lines(result):
            plain.info(line)
    return result.exit_code


def ssh_config(args: Args) -> int | None:
    if not _valid(args):
        return None
    node = nodes.find(args, daemon=False)
    if node is None:
        return None
    import os

    from tpuctl.ops.ssh_config import known_hosts_file, render_ssh_config

    sl = node.entry["slice"]
    known_hosts = known_hosts_file(node.project, node.zone, args.name)
    if not os.path.isfile(known_hosts):
        return None  # the full CLI pins the host keys again
    try:
        text = render_ssh_config(
            name=args.name, accelerator_type=str(sl["accelerator_type"]),
            project=node.project, zone=node.zone,
            workers=[(f"{args.name}-w{int(t['index'])}", str(t["host"]), int(t["port"]),
                      str(t["username"]), None, None) for t in node.targets],
            key=node.key_path, known_hosts=known_hosts)
    except (ValueError, TpuctlError, KeyError, TypeError):
        return None
    plain.text_block(text)
    return 0
