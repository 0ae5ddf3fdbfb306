"""`list` names the multislice group each slice belongs to (the NAME other commands take)."""

from __future__ import annotations

import io

from tpuctl.cli.render.nodes import ListView
from tpuctl.model import Slice
from tpuctl.ops.nodes import NodeList

QR = "projects/p/locations/z/queuedResources/"


def _node(name: str, qr: str = "") -> Slice:
    return Slice(name, "p", "z", "v6e-16", "v2-alpha-tpuv6e", "READY",
                 queued_resource=QR + qr if qr else "")


def test_slices_of_a_group_carry_its_name_and_other_nodes_none() -> None:
    listed = NodeList("p", "z", (_node("big-0", "big"), _node("big-1", "big"),
                                 _node("spot", "spot"),  # a one-node queued resource
                                 _node("big-extra", "big"), _node("plain")))
    assert listed.groups == {"big-0": "big", "big-1": "big"}
    assert [d["group"] for d in listed.to_dict()] == ["big", "big", None, None, None]


def test_the_table_shows_a_group_column_only_when_there_is_a_group(monkeypatch) -> None:
    def table(nodes: tuple[Slice, ...]) -> list[str]:
        buf = io.StringIO()
        monkeypatch.setattr("sys.stdout", buf)
        ListView().text(NodeList("p", "z", nodes))
        return buf.getvalue().splitlines()

    lines = table((_node("big-0", "big"), _node("big-1", "big"), _node("plain")))
    assert lines[0].split()[:2] == ["NAME", "GROUP"]
    assert [ln.split()[:2] for ln in lines[1:]] == [["big-0", "big"], ["big-1", "big"],
                                                   ["plain", "-"]]
    assert "GROUP" not in table((_node("plain"),))[0]
