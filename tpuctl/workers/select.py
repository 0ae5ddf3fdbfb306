"""Parsing `--worker all|0,2-3|w1|s1w0-3` into a sorted list of (global) worker indices.

A multislice group labels its workers' lines `sSwW` (tpuctl/labels.py), so a selection may
name them the same way: `s1` (every worker of slice 1), `s1w0`, `s1w0-3`; and a single slice's
`w3` or `w1-3` (its label) is the same as `3` or `1-3`. Parsed by hand: the
fast path imports this module and must not load `re` (tests/unit/test_fast_imports.py).
"""

from __future__ import annotations

from tpuctl.errors import UsageError
from tpuctl.labels import MAX_SLICES

# More workers than any TPU slice has (the largest, v5p-12288, has 1536 hosts): an index
# beyond this is a typo, refused before a range of it is ever built.
MAX_WORKERS = 65536
_DIGITS = "0123456789"
_HINT = "use 'all', an index like 0, a list 0,2 or a range 1-3"
_SLICE_HINT = "use sS, sSwW or sSwA-B, e.g. s1 (all of slice 1), s1w0 or s1w0-3"


def parse_worker_selection(spec: str, num_workers: int | None, slices: int = 1) -> list[int]:
    """Indices named by spec, checked against the node's worker count (and, for the `sS...`
    forms, its slice count: `num_workers // slices` hosts each, as cloud/groups.py counts).

    With num_workers None only the syntax is checked (before any API call); the result is
    then meaningless for 'all' and the `sS...` forms. Ranges are checked against the counts
    before they are built, and the result is built once from the merged ranges: no input
    makes more than MAX_WORKERS indices, however many parts it has.
    """
    spec = spec.strip()
    if not spec:
        raise UsageError("empty worker selection (--worker '')", hint=_HINT)
    if num_workers is not None and num_workers <= 0:
        raise UsageError("the node has no workers", hint="check `tpuctl describe` for its state")
    if spec in ("all", "*"):
        return list(range(num_workers or 0))
    spans = [_slice_part(spec, part, num_workers, max(1, slices)) if part.startswith("s")
             else _label_part(spec, part, num_workers, max(1, slices)) if part.startswith("w")
             else _index_part(spec, part, num_workers)
             for part in (p.strip() for p in spec.split(","))]
    return _union(spans)


def _index_part(spec: str, part: str, num_workers: int | None, shown: str | None = None
                ) -> tuple[int, int]:
    """`N` or `N-M`: global indices (lo, hi); `shown`: the part as the user wrote it."""
    written = (shown or part)[:40]
    lo_s, dash, hi_s = part.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
        if lo_s.strip() != lo_s or (dash and hi_s.strip() != hi_s) or lo < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"invalid worker selection {spec[:40]!r} (at {written!r})",
                         hint=_HINT) from None
    if hi < lo:
        raise UsageError(f"invalid worker range {written!r}: high end below low end",
                         hint="write ranges low-high, e.g. 1-3")
    if num_workers is not None and hi >= num_workers:
        raise UsageError(
            f"worker {str(hi)[:20]} does not exist: the node has {num_workers} worker(s), "
            f"0-{num_workers - 1}",
            hint="pick indices within that range",
        )
    _check_max(spec, hi)
    return lo, hi


def _label_part(spec: str, part: str, num_workers: int | None, slices: int
                ) -> tuple[int, int]:
    """`wN` or `wN-M`, as a single slice labels its workers' lines: indices N-M. A multislice
    group labels them `sSwW`, so there `wN` would be ambiguous: refused, naming that form."""
    if num_workers is not None and slices > 1:
        raise UsageError(f"worker selection {part[:40]!r} is ambiguous in a multislice group",
                         hint="name the slice too, e.g. s0w1 or s1w0-3 (as its lines are "
                         "labelled), or a global index")
    return _index_part(spec, part[1:], num_workers, shown=part)


def _slice_part(spec: str, part: str, num_workers: int | None, slices: int
                ) -> tuple[int, int]:
    """`sS`, `sSwW` or `sSwA-B`: (lo, hi) global indices; (0, -1), nothing, when only the
    syntax is checked."""
    s_txt, w, w_txt = part[1:].partition("w")
    lo_txt, dash, hi_txt = w_txt.partition("-")
    s, lo = _number(s_txt), _number(lo_txt)
    hi = _number(hi_txt) if dash else lo
    if s is None or (w and (lo is None or hi is None)):
        raise UsageError(f"invalid worker selection {spec[:40]!r} (at {part[:40]!r})",
                         hint=_SLICE_HINT)
    if s >= MAX_SLICES:
        raise UsageError(f"invalid worker selection {spec[:40]!r}: no multislice group has "
                         "that many slices", hint="pick a slice the group has (`tpuctl describe`)")
    if w and lo is not None and hi is not None:
        if hi < lo:
            raise UsageError(f"invalid worker range {part[:40]!r}: high end below low end",
                             hint="write ranges low-high, e.g. s1w0-3")
        _check_max(spec, hi)
    if num_workers is None:
        return 0, -1
    if s >= slices:
        if slices == 1:
            raise UsageError(f"slice {s} does not exist: the node is not a multislice group",
                             hint="select its workers by index, e.g. 0,2-3 (s0 is all of them)")
        raise UsageError(f"slice {s} does not exist: the group has {slices} slice(s), "
                         f"s0-s{slices - 1}", hint=f"pick a slice within s0-s{slices - 1}")
    hosts = num_workers // slices
    if not w or lo is None or hi is None:
        lo, hi = 0, hosts - 1
    elif hi >= hosts:
        where = "the node has" if slices == 1 else "each slice has"
        raise UsageError(f"worker s{s}w{hi} does not exist: {where} {hosts} worker(s), "
                         f"w0-w{hosts - 1}", hint=f"pick workers within that range, e.g. "
                         f"s{s}w0-{hosts - 1}")
    return s * hosts + lo, s * hosts + hi


def _number(text: str) -> int | None:
    """A plain decimal (ASCII digits only), or None; a long one is simply too large."""
    if not text or text.strip(_DIGITS):
        return None
    return int(text) if len(text) <= 9 else 10**9


def _check_max(spec: str, hi: int) -> None:
    if hi >= MAX_WORKERS:
        raise UsageError(f"invalid worker selection {spec[:40]!r}: no TPU slice has that "
                         "many workers", hint="pick indices the node has (`tpuctl describe`)")


def _union(spans: list[tuple[int, int]]) -> list[int]:
    """The sorted indices of the (lo, hi) ranges, each built once (overlaps merged first)."""
    out: list[int] = []
    for lo, hi in sorted(spans):
        out.extend(range(max(lo, out[-1] + 1) if out else lo, hi + 1))
    return out
