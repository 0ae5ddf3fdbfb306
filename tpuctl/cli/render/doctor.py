"""`tpuctl doctor`: this machine's checks, the workers' matrix, then each problem with its fix."""

from __future__ import annotations

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.ops.doctor_checks import FIXES, Check, DoctorReport, columns

_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "-"}


def _summary(c: Check) -> str:
    facts = " ".join(f"{k}={v}" for k, v in c.fields.items())
    return " ".join(p for p in (facts, c.detail) if p) or "-"


class DoctorView(View[DoctorReport]):
    def text(self, report: DoctorReport) -> None:
        output.table(["CHECK", "STATUS", "DETAIL"],
                     [[c.name, _MARK[c.status], _summary(c)] for c in report.local],
                     title="this machine" + (f" and node {report.node}" if report.node else ""))
        if report.workers:
            names = columns(report.workers.values())
            rows = []
            for i in sorted(report.workers):
                got = {c.name: c for c in report.workers[i]}
                rows.append([f"w{i}", *(_MARK[got[n].status] if n in got else "-"
                                        for n in names)])
            output.out("")
            output.table(["WORKER", *names], rows, title="workers")
        for label, items in (("FAIL", report.problems()), ("WARN", report.warnings())):
            for worker, c in items:
                where = "local" if worker is None else f"w{worker}"
                fix = FIXES.get(c.name)
                output.info(f"{label} {where} {c.name}: {_summary(c)}"
                            + (f"\n  fix: {fix}" if fix else ""))
        if not report.problems() and report.stopped is None:
            output.info("healthy" + (f": {len(report.workers)} worker(s) checked"
                                     if report.workers else ""))
