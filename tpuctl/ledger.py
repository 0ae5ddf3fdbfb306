"""The cost ledger: what happened to each node and run, as this machine saw it, kept where
`tpuctl cost` finds it after the node is gone (~/.tpuctl/ledger.jsonl).

Append-only JSON lines, one event each, 0600 in the 0700 ~/.tpuctl. Writers take an exclusive
`flock` and append one whole line with one write (O_APPEND), so concurrent commands never
interleave; a line a crash left torn is ended with a newline by the next writer and skipped
by readers, as is any line that is not a well-formed event (the file is data, read
defensively). Writing is best effort: a command never fails because its ledger line could not
be written (one warning on stderr says so).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from tpuctl import validate
from tpuctl.paths import private_dir, tpuctl_home

KINDS = ("create", "delete", "preempted", "run_start", "run_end")
VERSION = 1
GCP = "gcp"  # the `cloud` of events on Google Cloud (else the API endpoint's URL)


@dataclass(frozen=True)
class LedgerEvent:
    kind: str  # one of KINDS
    t: float  # unix seconds when it happened (a run's end: as the worker recorded it)
    cloud: str  # GCP, or the TPU API endpoint (the emulator)
    project: str
    zone: str
    node: str
    created: str = ""  # the node's createTime (RFC 3339): which incarnation of the name
    accelerator_type: str = ""
    spot: bool = False
    price: float | None = None  # per hour when the event was written, if known
    currency: str = ""
    price_source: str = ""
    run: str = ""  # run_start, run_end

    def to_line(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v not in ("", None, False)}
        return json.dumps({"v": VERSION, **d}, sort_keys=True, separators=(",", ":")) + "\n"


_STRINGS = ("cloud", "project", "zone", "node", "created", "accelerator_type", "currency",
            "price_source", "run")


def parse_event(line: str) -> LedgerEvent | None:
    """One ledger line as an event, or None for anything else (torn, foreign, hostile)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("v") != VERSION or obj.get("kind") not in KINDS:
        return None
    t, price = obj.get("t"), obj.get("price")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        return None
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))
                              or not math.isfinite(price) or price < 0):
        return None
    values: dict[str, Any] = {}
    for k in _STRINGS:
        v = obj.get(k, "")
        if not isinstance(v, str) or len(v) > 300 or not v.isprintable():
            return None
        values[k] = v
    try:
        validate.zone(values["zone"])
        validate.plain_name(values["node"], "node name")
        validate.plain_name(values["accelerator_type"], "accelerator type")
        if values["run"]:
            validate.run_id(values["run"])
    except ValueError:
        return None
    if not values["node"]:
        return None
    return LedgerEvent(kind=obj["kind"], t=float(t), spot=obj.get("spot") is True,
                       price=None if price is None else float(price), **values)


def ledger_path() -> Path:
    return tpuctl_home() / "ledger.jsonl"


class FileLedger:
    """The `Ledger` port on ~/.tpuctl/ledger.jsonl."""

    _warned = False

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ledger_path()

    def record(self, event: LedgerEvent) -> None:
        import fcntl

        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                data = event.to_line().encode()
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a torn last line stays alone on its line
                os.write(fd, data)
            finally:
                os.close(fd)  # releases the lock
        except OSError as e:
            if not FileLedger._warned:
                FileLedger._warned = True
                sys.stderr.write(f"warning: cannot write the cost ledger {self.path}: "
                                 f"{e.strerror or e}; `tpuctl cost` will miss this event\n")

    def read(self) -> list[LedgerEvent]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as e:
            if not FileLedger._warned:
                FileLedger._warned = True
                sys.stderr.write(f"warning: cannot read the cost ledger {self.path}: "
                                 f"{e.strerror or e}\n")
            return []
        return [e for e in (parse_event(line) for line in text.splitlines()) if e is not None]


class Readable(Protocol):
    def read(self) -> list[LedgerEvent]: ...


class ReadOnlyLedger:
    """Another ledger's events, and nothing written (`--dry-run`: files are read, never
    written)."""

    def __init__(self, real: Readable) -> None:
        self._real = real

    def record(self, event: LedgerEvent) -> None:
        return None

    def read(self) -> list[LedgerEvent]:
        return self._real.read()


class NullLedger:
    """Records nothing and has nothing: `--dry-run` (and anything without a ledger)."""

    def record(self, event: LedgerEvent) -> None:
        return None

    def read(self) -> list[LedgerEvent]:
        return []


EVENT_FIELDS = tuple(f.name for f in fields(LedgerEvent))
