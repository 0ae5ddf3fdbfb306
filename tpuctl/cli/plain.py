"""Output without rich: the print primitives, and the text of the short commands (exec,
status, tail, stop, ssh-config) as both the full CLI's views (cli/render/) and the fast path
(cli/fast/) draw it. One function per piece of text, so the two paths cannot drift apart
(tests/e2e/test_fast_path.py runs both and compares their bytes).

Workers' lines are printed as they arrived, prefixed `[wN]`. Into a pipe or a file they
are exactly as the worker wrote them; on a terminal the prefix is coloured with a plain ANSI
code (one per worker, as before) and the line's control characters other than tabs and
colours are shown, not obeyed (tpuctl/termsafe.py: a job's output must not drive the
terminal). (These lines used to go through rich, which also read them as markup
and emoji codes, expanded tabs and dropped carriage returns.) No colour when NO_COLOR is set
or TERM is dumb, as rich decides for everything else it draws.
"""

from __future__ import annotations

import os
import sys

from tpuctl.labels import label
from tpuctl.termsafe import for_terminal, lines_for_terminal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, TextIO

    from tpuctl.errors import TpuctlError
    from tpuctl.ops.results import RunStatus, StopResult
    from tpuctl.workers.records import WorkerResult

# ANSI colour numbers of the worker prefixes: cyan, magenta, green, yellow, blue, red
_COLOURS = (36, 35, 32, 33, 34, 31)


def out(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """Progress and summaries go to stderr, so stdout stays clean for data and pipes. They may
    quote workers (a bootstrap's last log line, a failed one's log tail in an error): at a
    terminal, shown, not obeyed (termsafe.py)."""
    if sys.stderr.isatty():
        message = lines_for_terminal(message)
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def print_json(obj: Any) -> None:
    import json  # only for --json (~0.9 ms)

    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def error_lines(err: TpuctlError) -> str:
    line = f"error: {err.message}"
    if err.hint:
        line += f"\n  hint: {err.hint}"
    return line


def render_error(err: TpuctlError, *, as_json: bool = False) -> None:
    """The one form every error takes: `error:` and `hint:` on stderr (and with --json the
    same fields as an object on stdout)."""
    if as_json:
        print_json(err.to_dict())
    info(error_lines(err))


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A table as plain text: columns left-aligned, two spaces apart."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in cells]


def colour_allowed(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and \
        os.environ.get("TERM") not in ("dumb", "unknown")


def line_printer(json_mode: bool) -> Callable[[int, str, str], None]:
    """Print each worker's lines as they arrive, prefixed `[wN]` (coloured on a terminal);
    with --json they go to stderr, so stdout holds the document only."""
    colour = not json_mode and sys.stdout.isatty()
    # id(stream) -> (a terminal?, prefixes coloured?): asked once per stream, not per line
    kinds: dict[int, tuple[bool, bool]] = {}

    def on_output(index: int, stream: str, line: str) -> None:
        target = sys.stderr if (stream == "stderr" or json_mode) else sys.stdout
        kind = kinds.get(id(target))
        if kind is None:
            kind = kinds[id(target)] = (target.isatty(), colour and colour_allowed(target))
        tty, coloured = kind
        if tty:
            line = for_terminal(line)
        if coloured:
            code = _COLOURS[index % len(_COLOURS)]
            target.write(f"\x1b[{code}m[{label(index)}]\x1b[0m {line}\n")
        else:
            target.write(f"[{label(index)}] {line}\n")
        target.flush()

    return on_output


def unreachable(workers: dict[int, str]) -> None:
    """One stderr line per worker that could not be reached (the others' results stand)."""
    for i, why in sorted(workers.items()):
        info(f"{label(i)} unreachable: {why}")


def exec_summary(results: Iterable[WorkerResult]) -> str:
    """`exec`'s last line: `3/4 workers ok: w0 ok, w1 exit 2, ...`."""
    parts, failed, total = [], 0, 0
    for r in results:
        total += 1
        if r.ok:
            parts.append(f"{label(r.index)} ok")
            continue
        failed += 1
        parts.append(f"{label(r.index)} {r.error}" if r.error
                     else f"{label(r.index)} exit {r.exit_code}")
    return f"{total - failed}/{total} workers ok: " + ", ".join(parts)


STATUS_HEADERS = ["WORKER", "STATE", "EXIT", "HEARTBEAT", "PID", "LOG LINES"]


def status_header_lines(st: RunStatus) -> list[str]:
    lines = [f"node {st.node} {st.node_state}; run {st.run_id}: {st.state}"]
    if st.serve_url is not None:
        bad = ", ".join(f"w{i}" for i in st.degraded_workers)
        if st.first_down is not None and len(st.degraded_workers) > 1:
            bad += f", first down: w{st.first_down}"
        lines.append(f"serving: {st.serve_state} (health {st.health_code or '-'}"
                     f"{'; not serving: ' + bad if bad else ''}) at {st.serve_url}")
    return lines


def status_rows(st: RunStatus) -> list[list[object]]:
    return [[f"w{w.index}", w.state, "-" if w.exit_code is None else w.exit_code,
             "-" if w.heartbeat_age is None else f"{w.heartbeat_age}s ago",
             w.pid or "-", w.log_lines] for w in st.workers]


def status_unreachable(st: RunStatus) -> dict[int, str]:
    """The workers `status` names as unreachable, after its table."""
    return {w.index: w.error or "unreachable" for w in st.workers if w.state == "unreachable"}


def stop_lines(result: StopResult) -> list[str]:
    lines = []
    for w in result.workers:
        code = "-" if w.exit_code is None else w.exit_code
        lines.append(f"[w{w.index}] run {w.run_id}: {w.result} "
                     + (f"({w.error})" if w.error else f"(exit {code})"))
    return lines


def text_block(text: str) -> None:
    """Text that is the data (`ssh-config`), as is."""
    sys.stdout.write(text)
    sys.stdout.flush()
