"""A .env is read whole before anything is pushed: a bad line is exit 2 naming its number,
never its content (it may be a secret), and no library warning is printed."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl.errors import UsageError
from tpuctl.ops.secrets import parse_env

# secret-looking words (with digits, so never a word of the messages themselves)
TOKENS = st.from_regex(r"[A-Za-z]{4}[0-9]{2}[A-Za-z0-9_]{4,24}", fullmatch=True)
GOOD = st.lists(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}=[a-z0-9]{0,8}", fullmatch=True),
                max_size=5)


@given(good=GOOD, token=TOKENS, shape=st.sampled_from(["{t} {t}=1", "{t}", "9{t}=1",
                                                         "{t} KEY=1", "export {t} x"]))
def test_a_bad_line_is_named_by_number_never_by_content(good, token, shape):
    text = "\n".join([*good, shape.format(t=token), "LATER=1"]) + "\n"
    with pytest.raises(UsageError) as e:
        parse_env(text, ".env")
    assert f"line {len(good) + 1}" in e.value.message
    assert "nothing was pushed" in e.value.message
    assert token not in e.value.message + (e.value.hint or "")


def test_no_library_warning(caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(UsageError):
        parse_env("A=1\nBAD KEY=1\n", "stdin")
    assert caplog.records == []


@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
                       st.text(st.characters(blacklist_characters="'\\\n\r\x00",
                                             blacklist_categories=("Cs",)), max_size=20),
                       max_size=6))
def test_good_files_parse_as_python_dotenv_reads_them(values):
    text = "# a comment\n\n" + "".join(f"{k}='{v}'\n" for k, v in values.items())
    assert parse_env(text, ".env") == values
