"""Workers' lines made safe for a terminal: what a job prints must not drive the user's
terminal. A log line can carry escape sequences that clear the screen, move the cursor over
tpuctl's own lines (a forged `✓ run done exit 0`), set the window title, write the clipboard
(OSC 52) or hide text. At a terminal every control character is shown as `cat -v` shows it
(`^[`, `^G`, `^?`, `M-^[` for C1), except tabs and colour codes (SGR, `ESC [ ... m`), which
logs use and which cannot move anything; a line that set a colour ends with a reset, so the
next line is not painted. A carriage return redraws a line (progress bars): only what a
terminal would end up showing after the last one is kept, so the `[wN]` prefix stays.

Pipes and files get the bytes exactly as the worker wrote them (plain.line_printer decides).
No imports: the fast path prints through this (tests/unit/test_fast_imports.py).
"""

from __future__ import annotations

_SGR_BODY = frozenset("0123456789;:")
_CONTROLS = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))) - {"\t"}
RESET = "\x1b[0m"


def _caret(ch: str) -> str:
    """`cat -v`'s form of a control character."""
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return "M-" + _caret(chr(code - 0x80))  # C1: 0x80-0x9f


def _sgr_end(line: str, at: int) -> int:
    """The index after an SGR sequence starting at `at` (an ESC), or -1 if it is not one."""
    if not line.startswith("[", at + 1):
        return -1
    i = at + 2
    while i < len(line) and line[i] in _SGR_BODY:
        i += 1
    return i + 1 if i < len(line) and line[i] == "m" else -1


def for_terminal(line: str) -> str:
    """`line` as it is safe to print at a terminal (see the module's docstring)."""
    if _CONTROLS.isdisjoint(line):
        return line
    if "\r" in line:
        shown = [part for part in line.split("\r") if part]
        line = shown[-1] if shown else ""
    out: list[str] = []
    coloured = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch not in _CONTROLS:
            out.append(ch)
            i += 1
            continue
        end = _sgr_end(line, i) if ch == "\x1b" else -1
        if end > 0:
            out.append(line[i:end])
            coloured = True
            i = end
            continue
        out.append(_caret(ch))
        i += 1
    if coloured:
        out.append(RESET)
    return "".join(out)


def lines_for_terminal(text: str) -> str:
    """Each line of `text` as `for_terminal` shows it (its newlines kept)."""
    if _CONTROLS.isdisjoint(text.replace("\n", "")):
        return text
    return "\n".join(for_terminal(line) for line in text.split("\n"))
