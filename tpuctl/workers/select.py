"""Parsing `--worker all|0,2-3` into a sorted list of worker indices."""

from __future__ import annotations

from tpuctl.errors import UsageError

# More workers than any TPU slice has (the largest, v5p-12288, has 1536 hosts): an index
# beyond this is a typo, refused before a range of it is ever built.
MAX_WORKERS = 65536


def parse_worker_selection(spec: str, num_workers: int | None) -> list[int]:
    """Indices named by spec, checked against the slice's worker count.

    With num_workers None only the syntax is checked (before any API call); the result is
    then meaningless for 'all'. Ranges are checked against the count before they are built.
    """
    spec = spec.strip()
    if not spec:
        raise UsageError("empty worker selection (--worker '')",
                         hint="use 'all', an index like 0, a list 0,2 or a range 1-3")
    if num_workers is not None and num_workers <= 0:
        raise UsageError("the node has no workers", hint="check `tpuctl describe` for its state")
    if spec in ("all", "*"):
        return list(range(num_workers or 0))
    chosen: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        lo_s, dash, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
            if lo_s.strip() != lo_s or (dash and hi_s.strip() != hi_s) or lo < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"invalid worker selection {spec[:40]!r} (at {part[:40]!r})",
                             hint="use 'all', an index like 0, a list 0,2 or a range 1-3") from None
        if hi < lo:
            raise UsageError(f"invalid worker range {part[:40]!r}: high end below low end",
                             hint="write ranges low-high, e.g. 1-3")
        if num_workers is not None and hi >= num_workers:
            raise UsageError(
                f"worker {str(hi)[:20]} does not exist: the node has {num_workers} worker(s), "
                f"0-{num_workers - 1}",
                hint="pick indices within that range",
            )
        if hi >= MAX_WORKERS:
            raise UsageError(f"invalid worker selection {spec[:40]!r}: no TPU slice has that "
                             "many workers", hint="pick indices the node has (`tpuctl describe`)")
        chosen.update(range(lo, hi + 1))
    return sorted(chosen)
