"""`config.quick_repo_config` (the fast path's tpuctl.yaml reader, without yaml) reads every
file it accepts exactly as `load_repo_config` (yaml) does, and gives up on anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpuctl import config

_KEYS = st.sampled_from(["project", "zone", "api_endpoint", "persist_connections", "region",
                         "Project", "zone ", " zone"])
_VALUES = st.one_of(
    st.sampled_from(["my-proj", "us-east5-b", "http://127.0.0.1:8080", "https://x.test/v2",
                     "300", "0", "007", "1e3", "0x10", "1_000", "yes", "No", "null", "~",
                     "on", "y", "a:b", "a #c", "'q'", '"q"', "[1]", "{a: 1}", "-", "&a", "*a",
                     "!!str 5", "1.5", ".inf", "2026-01-01", "12:30", "a\tb", ""]),
    st.text(alphabet="az09-_.:/#'\" \t", max_size=12))
_LINE = st.one_of(
    st.tuples(_KEYS, st.sampled_from([": ", ":", ":  ", " : ", ":\t"]), _VALUES,
              st.sampled_from(["", " ", "  # note", "\t", "\r"])).map("".join),
    st.sampled_from(["", "# a comment", "  # indented", "\t# tab", "---", "...", "  ",
                     "project:", "- a", "zone: [a, b]"]))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, max_size=6))
def test_what_the_quick_reader_accepts_yaml_reads_the_same(tmp_path: Path,
                                                           lines: list[str]) -> None:
    path = tmp_path / "tpuctl.yaml"
    path.write_text("\n".join(lines))
    try:
        quick = config.quick_repo_config(path)
    except config.NotSimple:
        return
    assert config.load_repo_config(path) == quick, lines


@pytest.mark.parametrize(("text", "expected"), [
    ("project: p1\nzone: us-east5-b\n", {"project": "p1", "zone": "us-east5-b"}),
    ("# c\n\npersist_connections: 0\r\n", {"persist_connections": "0"}),
    ("api_endpoint: http://127.0.0.1:9/\n", {"api_endpoint": "http://127.0.0.1:9/"}),
])
def test_plain_files_are_read_quickly(tmp_path: Path, text: str,
                                      expected: dict[str, str]) -> None:
    path = tmp_path / "tpuctl.yaml"
    path.write_text(text)
    assert config.quick_repo_config(path) == expected == config.load_repo_config(path)


@pytest.mark.parametrize("text", ["zone: yes\n", "persist_connections: 007\n",
                                  "project: 'p'\n", "zone: a #c\n", "region: x\n",
                                  "project: p\nproject: q\n", "zone:\tz\n", "zone: 1e3\n"])
def test_anything_yaml_might_read_otherwise_is_left_to_yaml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "tpuctl.yaml"
    path.write_text(text)
    with pytest.raises(config.NotSimple):
        config.quick_repo_config(path)
