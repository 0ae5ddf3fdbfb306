"""`--dry-run`: the transcript of what would have been sent, in order (stdout), and a line
saying nothing was (stderr). Deterministic for a given command and repository state, so
tests/golden/ can hold it."""

from __future__ import annotations

import json as jsonlib
from typing import Any

from tpuctl.cli import output
from tpuctl.dryrun.transcript import ApiCall, Transcript


def lines(t: Transcript) -> list[str]:
    out = ["# dry run: nothing was changed. In order, what tpuctl would send:"]
    if not t.reads_api:
        out.append("# (no API call at all: planned as for a node that does not exist yet)")
    for step in t.steps:
        if isinstance(step, ApiCall):
            out.append(f"{step.method} {step.path}")
            if step.body is not None:
                out += jsonlib.dumps(step.body, indent=2, sort_keys=True).splitlines()
        else:
            out.append(f"{step.where}: {step.line}")
            out += [f"  < {d}" for d in step.stdin]
    return out


def transcript(t: Transcript, *, json: bool, document: dict[str, Any] | None = None) -> None:
    if json:
        output.print_json({**(document or {}), "dry_run": t.to_list()})
    else:
        for line in lines(t):
            output.out(line)
    output.info(f"dry run: {t.api_calls} API request(s) and {t.worker_calls} worker call(s) "
                "not sent")
