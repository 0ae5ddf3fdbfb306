"""create, list, describe, delete, gc, accelerators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from tpuctl.accelerators import AcceleratorType
from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.cli.render.cost import duration, price_line
from tpuctl.model import Slice
from tpuctl.ops.create import CreateEvents, CreateResult
from tpuctl.ops.gc import Candidate, GcEvents, GcResult
from tpuctl.ops.nodes import DeleteEvents, DeleteResult, NodeDetail, NodeList
from tpuctl.prices import Price, money


def workers_table(sl: Slice) -> None:
    output.table(["WORKER", "INTERNAL IP", "EXTERNAL IP", "SSH PORT"],
                 [[f"w{w.index}", w.ip, w.external_ip or "-", w.ssh_port]
                  for w in sl.workers])


class CreateView(View[CreateResult], CreateEvents):
    def __init__(self, name: str, accelerator_type: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.name, self.accelerator_type = name, accelerator_type

    def zone(self, zone: str) -> None:
        self.progress.open(f"{self.name} ({self.accelerator_type} in {zone})")

    def state(self, state: str) -> None:
        self.progress.update(state)

    def no_capacity(self, zone: str, message: str, next_zone: str) -> None:
        self.progress.close()
        output.info(f"{zone}: {message}; trying {next_zone}")

    def price(self, price: Price) -> None:
        if not self.json:
            self.progress.close()
            output.info(price_line(price))

    def dry_run_document(self, result: CreateResult) -> dict[str, Any] | None:
        return {"price_per_hour": result.price.to_dict()} if result.price else None

    def text(self, result: CreateResult) -> None:
        sl = result.slice
        verb = "created" if result.created else "reused existing"
        output.info(f"{verb} {sl.name}: {sl.accelerator_type}, {sl.runtime_version}, "
                    f"{sl.state}, {len(sl.workers)} worker(s) in {result.seconds:.1f}s")
        workers_table(sl)


def _idle_cell(result: NodeList, name: str) -> str:
    v = result.idle.get(name)
    if v is None or v.state == "unknown":
        return "-"
    if v.state == "busy":
        return "busy"
    mark = " !" if name in result.flagged else ""
    return f"{duration(v.idle_for(result.now))}{mark}"


class ListView(View[NodeList]):
    def text(self, result: NodeList) -> None:
        if not result.nodes:
            managed = "" if result.include_unmanaged else "managed "
            output.info(f"no {managed}nodes in {result.project}/{result.zone}")
            return
        rows = []
        for n in result.nodes:
            c = result.costs.get(n.name)
            so_far = c.so_far if c else None
            rows.append([n.name, n.accelerator_type, n.state, n.runtime_version, len(n.workers),
                         "yes" if n.managed else "no", n.owner or "-",
                         duration(c.age_s) if c and c.age_s is not None else "-",
                         c.price.text() if c else "-",
                         "-" if so_far is None or c is None else money(so_far, c.price.currency),
                         _idle_cell(result, n.name), n.capacity_type])
        headers = ["NAME", "TYPE", "STATE", "RUNTIME", "WORKERS", "MANAGED", "OWNER", "AGE",
                   "PRICE", "SO FAR", "IDLE", "CAPACITY"]
        groups = result.groups
        if groups:  # a multislice group's slices: which NAME addresses them together
            headers.insert(1, "GROUP")
            for n, row in zip(result.nodes, rows, strict=True):
                row.insert(1, groups.get(n.name, "-"))
        output.table(headers, rows)
        if result.flagged:
            output.info(f"idle for more than {duration(result.idle_warn)} (idle_warn), still "
                        f"billing: {', '.join(result.flagged)}; `tpuctl down NAME --yes`, or "
                        f"`tpuctl gc --idle {duration(result.idle_warn)}`")
        if result.without_owner:
            output.info(f"no owner label (created before tpuctl recorded owners): "
                        f"{', '.join(result.without_owner)}; they work as before, `gc` takes "
                        "them only with --any-owner")


class DescribeView(View[NodeDetail]):
    def text(self, detail: NodeDetail) -> None:
        sl, cost = detail.slice, detail.cost
        so_far = cost.so_far
        for key, value in (("name", sl.name), ("project", sl.project), ("zone", sl.zone),
                           ("type", sl.accelerator_type), ("runtime", sl.runtime_version),
                           ("state", sl.state), ("health", sl.health or "-"),
                           ("spot", "yes" if sl.spot else "no"),
                           ("capacity", sl.capacity_type),
                           ("queued", sl.queued_resource.rsplit("/", 1)[-1] or "-"),
                           ("managed", "yes" if sl.managed else "no"),
                           ("owner", sl.owner or "-"),
                           ("created", sl.create_time or "-"),
                           ("age", "-" if cost.age_s is None else duration(cost.age_s)),
                           ("price", price_line(cost.price, prefix="")),
                           ("so far", "-" if so_far is None
                            else money(so_far, cost.price.currency))):
            output.out(f"{key:<9} {value}")
        workers_table(sl)


def ask(question: str) -> bool:
    """A yes/no question at the terminal (only asked when stdin is one)."""
    return bool(typer.confirm(question, default=False))


class DeleteView(View[DeleteResult], DeleteEvents):
    def __init__(self, name: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.name = name

    def confirm(self, sl: Slice) -> bool:
        return ask(f"Delete {sl.name} ({sl.accelerator_type}, {len(sl.workers)} workers, "
                   f"{sl.state}) in {sl.zone}?")

    def polling(self) -> None:
        if self.progress.last is None:
            self.progress.open(f"deleting {self.name}")
        self.progress.update("DELETING")

    def text(self, result: DeleteResult) -> None:
        output.info(f"deleted {result.name} in {result.seconds:.1f}s" if result.waited
                    else f"deleting {result.name} (not waiting)")


class GcView(View[GcResult], GcEvents):
    def kept(self, kept: Sequence[Candidate]) -> None:
        if not self.json:
            for c in kept:
                output.info(f"kept {c.node.name}: {c.reason}")

    def found(self, candidates: Sequence[Candidate], not_yours: Sequence[Candidate]) -> None:
        if self.json:
            return
        if not_yours:
            output.info(f"left alone, not yours: {', '.join(c.node.name for c in not_yours)} "
                        "(--any-owner includes them)")
        if candidates:
            output.table(["NAME", "STATE", "REASON"],
                         [[c.node.name, c.node.state, c.reason] for c in candidates])

    def confirm(self, candidates: Sequence[Candidate]) -> bool:
        return ask(f"Delete {len(candidates)} node(s)?")

    def dry_run_document(self, result: GcResult) -> dict[str, Any]:
        return {**result.to_dict(), "deleted": []}  # nothing was

    def done(self, result: GcResult) -> int:
        if self.dry_run and not self.json:
            output.info(f"{len(result.candidates)} node(s) would be deleted (dry run)"
                        if result.candidates else
                        f"nothing to collect in {result.project}/{result.zone}")
        return super().done(result)

    def text(self, result: GcResult) -> None:
        if not result.candidates:
            output.info(f"nothing to collect in {result.project}/{result.zone}")
        else:
            output.info(f"deleted {len(result.deleted)} node(s): {', '.join(result.deleted)}")


class AcceleratorsView(View[list[AcceleratorType]]):
    def document(self, types: list[AcceleratorType]) -> list[dict[str, object]]:
        return [{"type": a.name, "chips": a.chips, "hosts": a.hosts,
                 "chips_per_host": a.chips_per_host, "default_runtime": a.default_runtime}
                for a in types]

    def text(self, types: list[AcceleratorType]) -> None:
        output.table(["TYPE", "CHIPS", "HOSTS", "CHIPS/HOST", "DEFAULT RUNTIME"],
                     [[a.name, a.chips, a.hosts, a.chips_per_host, a.default_runtime]
                      for a in types])
