"""Workers' lines at a terminal: shown, never obeyed (tpuctl/termsafe.py)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from tpuctl.cli import plain
from tpuctl.termsafe import RESET, for_terminal

CONTROLS = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))} - {"\t"}


def _sgr_free(text: str) -> str:
    """`text` without its SGR sequences (what may stay of ESC)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("\x1b[", i):
            j = i + 2
            while j < len(text) and text[j] in "0123456789;:":
                j += 1
            assert j < len(text) and text[j] == "m", repr(text)
            i = j + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def test_what_would_drive_the_terminal_is_shown_instead():
    assert for_terminal("a\x1b[2Jb") == "a^[[2Jb"  # clear screen
    assert for_terminal("\x1b]52;c;SGVsbG8=\x07x") == "^[]52;c;SGVsbG8=^Gx"  # clipboard
    assert for_terminal("\x1b]0;title\x1b\\") == "^[]0;title^[\\"  # window title
    assert for_terminal("up\x1b[1A\x1b[2K✓ run done exit 0") == "up^[[1A^[[2K✓ run done exit 0"
    assert for_terminal("bell\x07 del\x7f csi\x9b2J") == "bell^G del^? csiM-^[2J"


def test_colours_and_tabs_stay_and_a_colour_is_reset_at_the_line_end():
    assert for_terminal("a\tb") == "a\tb"
    assert for_terminal("\x1b[1;31mERROR\x1b[0m x") == "\x1b[1;31mERROR\x1b[0m x" + RESET
    assert for_terminal("\x1b[38:5:208mamber") == "\x1b[38:5:208mamber" + RESET
    assert for_terminal("\x1b[31") == "^[[31"  # unfinished: not a colour


def test_a_progress_bar_shows_what_the_terminal_would_after_its_last_redraw():
    assert for_terminal(" 10%|#    |\r 50%|###  |\r100%|#####|") == "100%|#####|"
    assert for_terminal("crlf line\r") == "crlf line"
    assert for_terminal("\r") == ""


@given(st.text())
def test_nothing_but_tabs_and_colours_is_left_to_the_terminal(line: str):
    shown = for_terminal(line)
    assert CONTROLS.isdisjoint(_sgr_free(shown))
    if CONTROLS.isdisjoint(line):
        assert shown == line  # a plain line is never touched


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF)
               .filter(lambda c: c not in CONTROLS)))
def test_printable_text_is_kept_exactly(line: str):
    assert for_terminal(line) == line


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_printer_makes_lines_safe_only_at_a_terminal(monkeypatch):
    pipe, tty = io.StringIO(), _Tty()
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr("sys.stdout", pipe)
    plain.line_printer(False)(0, "stdout", "x\x1b[2J")
    assert pipe.getvalue() == "[w0] x\x1b[2J\n"  # bytes exact into a pipe
    monkeypatch.setattr("sys.stdout", tty)
    plain.line_printer(False)(1, "stdout", "x\x1b[2J")
    assert tty.getvalue() == "[w1] x^[[2J\n"


def test_an_error_quoting_a_workers_log_is_shown_safely_at_a_terminal(monkeypatch):
    from tpuctl.errors import RemoteCommandError

    err = RemoteCommandError("bootstrap failed on w0: \x1b]0;pwned\x07 | oops\x1b[2J",
                             hint="see the log")
    tty, pipe = _Tty(), io.StringIO()
    monkeypatch.setattr("sys.stderr", tty)
    plain.render_error(err)
    assert tty.getvalue() == ("error: bootstrap failed on w0: ^[]0;pwned^G | oops^[[2J\n"
                              "  hint: see the log\n")
    monkeypatch.setattr("sys.stderr", pipe)
    plain.render_error(err)
    assert "\x1b]0;pwned\x07" in pipe.getvalue()  # into a pipe or file: as it is


def test_progress_lines_quoting_a_worker_are_shown_safely_at_a_terminal(monkeypatch):
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    plain.info("[w0] bootstrap running \x1b[1A\x1b[2K✓ done\nsecond line")
    assert tty.getvalue() == "[w0] bootstrap running ^[[1A^[[2K✓ done\nsecond line\n"
